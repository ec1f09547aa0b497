"""`resnet-study compare`: every installed backend on this machine, side by side, and what to pick.

`runner` starts one `worker` process per backend (a process holds one Keras backend), one after the
other so that no two measurements share the cores; each worker times its twin against the raw loop
(`study.measure.bench`) and checks it against the Lightning twin (`study.measure.numerics`, the code
`agree` runs). `machine` names the hardware and libraries, `recommend` turns the measured rows into a
pick per use case, and `render` writes them as Markdown and HTML.
"""
