"""Outputs: everything a run reported, fetched, converted and delivered within the size limit.

    collect ......... `collect_outputs`, `fetch_outputs`, `EarlyDownloads`: every output a run
                      reported, read from ComfyUI's folders or its `/view`
    delivery ........ `deliver`, `convert_image`: format conversion, then base64 or
                      object-store URLs within the response limit
    live ............ `LiveOutputs`: each output delivered as its node finishes and told at
                      once (a streamed job)
    job_step ........ `JobOutputs`: a job's outputs, delivered together or one by one
    stream .......... `job_stream`: a job as a stream of items within the answer's limit
    store ........... `ObjectStore`: the S3-compatible object store (boto3), uploads with
                      retries, presigned URLs
    bucket .......... endpoint, bucket, prefix and region from the BUCKET_* settings

Uses `comfyui` (events, `/view`), `contract` (the output items) and `job_files`. The modules
are imported where they are used, so importing the package costs nothing (boto3 is heavy).
"""
