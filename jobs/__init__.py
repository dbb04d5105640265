"""The ``dl3d`` command line, job specs, the shard runner and the training/sweep drivers."""
