"""W&B: each run (`wandb_run`) and the study on the dashboard (`dashboard`)."""
