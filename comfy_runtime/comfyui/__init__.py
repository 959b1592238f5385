"""Speaking to ComfyUI: its HTTP API, its websocket events, one prompt followed to its end,
and ComfyUI itself as our child process.

    wire ............ ComfyUI's HTTP answers as types (upload, prompt, queue, history)
    client .......... `ComfyClient`: ComfyUI's HTTP API, every call bounded
    events .......... ComfyUI's event protocol decoded once into types (`decode`, `Event`)
    event_hub ....... `EventHub`: the worker's one websocket, its events sorted by prompt id
    run_record ...... `RunRecord`, `FinishedRun`: what one run did, followed live and once finished
    prompt_run ...... `PromptRun`: queue one prompt and follow it to its end, whatever happens
    diagnosis ....... what ComfyUI's error reports mean, as job errors
    node_definitions  `DefinitionsCache`: node definitions, fetched once per ComfyUI process
    launch .......... `launch_command`, `launch_env`: a launched ComfyUI's command line, device,
                      previews, environment and model folders
    supervision ..... `ComfyProcess`, `launch_comfyui`: launch, readiness, deaths, restart

Knows nothing about RunPod or the job's contract; below it are only `settings`, `errors`,
`ui_format` (node definitions) and `models.paths` (the model folders a launch names). The
modules are imported where they are used, so importing the package costs nothing.
"""
