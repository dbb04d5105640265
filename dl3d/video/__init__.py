"""Videos in and out: listing, streaming decode and encode with PyAV, pose detection, overlay renders."""
