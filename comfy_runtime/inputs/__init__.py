"""Input media: base64, data URIs and URLs turned into checked files that ComfyUI can load.

    decode .......... `decode_inputs`, `upload_inputs`: inputs -> checked bytes -> stored for
                      ComfyUI (its input folder, or its upload API)
    file_types ...... which files an input may be (`check_suffix`), and content that agrees
                      with its name (`check_content`)

Uses `fetch` for URLs, `comfyui` for uploads and `job_files` for the job's own folder. The
modules are imported where they are used, so importing the package costs nothing.
"""
