"""comfy-worker's runtime: ComfyUI behind a RunPod endpoint.

The package, one line a module, in the order a job meets them (the README's Development
section repeats this map, and a test keeps the two equal):

    settings ........ every knob, read once from the environment
    contract ........ the job's input and output as pydantic models, and their JSON Schema
    graph_checks .... checks on an API graph before it reaches ComfyUI (size, depth, paths)
    workflows ....... bundled workflows: a graph by name, with typed parameters
    ui_format ....... (package) editor workflows to API graphs, exactly as ComfyUI's frontend
    workflow_source . the workflow field in any form (graph, editor, file, name) as an API graph
    errors .......... the tree of job errors and their stable codes
    diagnosis ....... what ComfyUI's error reports mean, as job errors
    wire ............ ComfyUI's HTTP answers as types (upload, prompt, queue, history)
    client .......... ComfyUI's HTTP API, every call bounded
    node_definitions . ComfyUI's node definitions, fetched once per ComfyUI process
    events .......... ComfyUI's event protocol decoded once into types
    event_hub ....... the worker's one websocket, its events sorted by prompt id
    run_record ...... what one run did, followed live and once finished
    prompt_run ...... queue one prompt and follow it to its end, whatever happens
    progress ........ events to a few progress reports a second
    inputs .......... base64 / data URI / URL inputs -> checked bytes -> stored for ComfyUI
    input_types ..... which files an input may be, and content that agrees with its name
    url_fetch ....... downloading a URL input, hop by hop, under one deadline
    address_policy .. which network addresses a URL may reach
    job_files ....... safe names, the job's own folder, local folders, cleanup
    outputs ......... every output a run reported, fetched from disk or ComfyUI
    delivery ........ format conversion, then base64 or object-store URLs within the size limit
    storage ......... the object store (boto3): uploads with retries, presigned URLs
    bucket_location . endpoint, bucket, prefix and region from BUCKET_* settings
    info ............ the info request: what this worker offers, read live
    blocking ........ the worker's thread pools and the one way to fan work out
    job_models ...... a job's models on demand: ensured in the cache, the graph rewritten
    job ............. one job, start to end
    supervision ..... ComfyUI as our child: launch, readiness, deaths, restart
    model_paths ..... models on a network volume, made known to ComfyUI
    model_inputs .... which loader input names which model folder; the job's `models` list
    model_fetch ..... downloading one model file: checked hops, resume, size, sha256, tokens
    model_part ...... a download's partial file: written in blocks, hashed on its own thread
    model_store ..... the model cache on disk: index, file locks, leases
    model_obtain .... one model: a hit, or downloaded once under its lock, installed, evicting
    model_cache ..... models on demand for a job: leases, several at once, the cache's folders
    worker .......... the worker's life across jobs: owns every resource, typed outcomes

Layers point one way: `job` and `worker` call the others; `client`, `events` and `event_hub`
know ComfyUI and nothing about RunPod; only `handler.py` (the edge) imports `runpod`.
"""

__version__ = "0.1.0"
"""The release version, written by hand only here: pyproject.toml repeats it (a test checks),
CHANGELOG.md has a section per release, and images are tagged `<version>-<model set>`."""
