"""End-to-end tests: the worker as users run it, through the real runpod SDK, in subprocesses.

Every test launches `python handler.py` with the ComfyUI double as "ComfyUI" (COMFYUI_DIR
points at tests/comfy_double), in one of the SDK's three modes: local test input, the
`--rp_serve_api` HTTP server, and the production job loop against a fake job queue.
"""
