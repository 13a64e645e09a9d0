"""The CryptoPipeline operator's pure core: the spec model (spec), the children it renders
(render_*), the status it reports (status). No module here talks
to the Kubernetes API; the kopf handlers that do are a thin shell over these.
"""
