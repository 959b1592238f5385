"""Models on demand: model files named by URL, downloaded once into a shared, bounded cache
that ComfyUI is told about.

    paths ........... ComfyUI's model folders, and a network volume's made known to ComfyUI
    inputs .......... which loader input names which folder; the job's `models` list
                      (`ModelRequest`) and what became of each (`ModelUsed`)
    fetch ........... downloading one model file: checked hops, resume, size, sha256, tokens
    part ............ a download's partial file: written in blocks, hashed on its own thread
    store ........... the cache on disk: index, file locks, leases
    obtain .......... one model: a hit, or downloaded once under its lock, installed, evicting
    cache ........... `ModelCache`: models for a job, leases, several at once, the folders
    job_step ........ `ensure_models`: a job's models made present and its graph rewritten

Below it are only `settings`, `errors` and `fetch`; `contract` imports `ModelRequest` and
`ModelUsed` from here. The folder and loader tables are data, in `data/`. The modules are
imported where they are used, so importing the package costs nothing.
"""
