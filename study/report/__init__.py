"""The report: `analysis` (analyze a study folder), `sections` (one per question), `findings` (the
opening paragraphs), `figures` (matplotlib) and `document` (Markdown and HTML)."""
