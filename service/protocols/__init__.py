"""The wire protocols, each one adapter in front of the data plane (docs/PROTOCOLS.md).

An adapter decodes a request into the data plane's inputs
(:class:`service.dataplane.PredictInputs`) and encodes its result object; the data plane
knows no protocol. The service's own JSON (``/predict``) and SageMaker's ``/invocations``
are decoded by :mod:`service.inference` and encoded by :mod:`service.codecs`; the Open
Inference Protocol (KServe V2) by :mod:`service.protocols.v2`, whose core is shared by its
REST and gRPC servers.
"""
