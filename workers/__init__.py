"""Ray workers: one plain class per model family, loaded once, turning one shard into committed outputs.

Each worker is a plain Python class (a test can call it on one shard without Ray); the job runner
wraps it with ``ray.remote`` and pins it to a GPU or a CPU slot.
"""
