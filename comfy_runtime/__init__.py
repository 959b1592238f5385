"""comfy-worker's runtime: ComfyUI behind a RunPod endpoint.

The package, bottom layer first: each line imports only from lines above it (or its own
line), never below. A name ending in `/` is a subpackage, its modules indented under it.
tests/test_architecture.py checks this order, that the map is the package, and that
docs/development.md repeats it.

    settings ........ every knob, read once from the environment
    errors .......... the tree of job errors and their stable codes
    blocking ........ the worker's thread pools and the one way to fan work out
    ui_format/ ...... editor workflows to API graphs, exactly as ComfyUI's frontend (alone)
    fetch/ .......... URL downloads and the address policy they obey
        address_policy  which network addresses a URL may reach
        deadline ........ one deadline and a cancel event over every wait of a download
        download ........ one URL fetched hop by hop, under one deadline
    models/ ......... models on demand, in a shared, bounded cache
        paths ........... ComfyUI's model folders, and a network volume's
        inputs .......... which loader input names which folder; the job's `models` list
        part ............ a download's partial file: written in blocks, hashed on a thread
        fetch ........... downloading one model file: checked hops, resume, size, sha256
        store ........... the cache on disk: index, file locks, leases
        obtain .......... one model: a hit, or downloaded once under its lock, installed
        cache ........... models for a job: leases, several at once, the cache's folders
        job_step ........ a job's models made present, its graph rewritten
    comfyui/ ........ speaking to ComfyUI, and ComfyUI as our child
        wire ............ ComfyUI's HTTP answers as types (upload, prompt, queue, history)
        client .......... ComfyUI's HTTP API, every call bounded
        events .......... ComfyUI's event protocol decoded once into types
        event_hub ....... the worker's one websocket, its events sorted by prompt id
        run_record ...... what one run did, followed live and once finished
        diagnosis ....... what ComfyUI's error reports mean, as job errors
        prompt_run ...... queue one prompt and follow it to its end, whatever happens
        node_definitions  node definitions, fetched once per ComfyUI process
        launch .......... a launched ComfyUI's command line, device, previews, environment
        supervision ..... ComfyUI as our child: launch, readiness, deaths, restart
    graph_checks .... checks on an API graph before it reaches ComfyUI (size, depth, paths)
    contract ........ the job's input and output as pydantic models, and their JSON Schema
    job_files ....... safe names, the job's own folder, ComfyUI's folders, cleanup
    progress ........ events to a few progress reports a second
    inputs/ ......... input media: base64, data URIs and URLs to checked files for ComfyUI
        file_types ...... which files an input may be, and content that agrees with its name
        decode .......... inputs -> checked bytes -> stored for ComfyUI
    outputs/ ........ every output a run reported, converted and delivered
        collect ......... every output a run reported, fetched from disk or ComfyUI
        bucket .......... endpoint, bucket, prefix and region from BUCKET_* settings
        store ........... the object store (boto3): uploads with retries, presigned URLs
        delivery ........ format conversion, then base64 or object-store URLs within the limit
        live ............ outputs delivered as their nodes finish, each told at once
        job_step ........ a job's outputs: delivered together, or one by one as they come
        stream .......... a job as a stream of items within the answer's limit
    workflows ....... bundled workflows: a graph by name, with typed parameters
    workflow_source . the workflow field in any form (graph, editor, file, name) as an API graph
    info ............ the info request: what this worker offers, read live
    job ............. one job, start to end
    worker .......... the worker's life across jobs: owns every resource, typed outcomes

`job` and `worker` call the others; `comfyui` knows nothing about RunPod or the job's
contract; only `handler.py` (the edge) imports `runpod`.
"""

__version__ = "0.1.0"
"""The release version, written by hand only here: pyproject.toml repeats it (a test checks),
CHANGELOG.md has a section per release, and images are tagged `<version>-<model set>`."""
