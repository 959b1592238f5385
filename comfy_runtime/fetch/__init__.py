"""URL downloads and the address policy they obey, shared by input media, workflow files and
models by URL.

    address_policy .. which network addresses a URL may reach: `checked_target`, `Resolver`,
                      `redact_url` (a URL as it may appear in logs and errors)
    deadline ........ one wall-clock deadline and a cancel event over every wait of a
                      download (connect, TLS, headers, body): `new_client`
    download ........ one URL input fetched hop by hop under one deadline: `fetch_url`,
                      `UrlPolicy`

Depends only on `errors`; nothing here knows ComfyUI or RunPod. The modules are imported
where they are used, so importing the package costs nothing.
"""
