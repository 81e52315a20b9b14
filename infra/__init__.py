"""Operating the platform locally: the stack scripts, the topic catalog, the demo."""
