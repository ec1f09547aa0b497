"""The ResNet depth-scaling study: specification, sweeps, statistics, report."""
