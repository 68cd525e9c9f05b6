"""The Open Inference Protocol (KServe V2): :mod:`.tensors` is the protocol-neutral core
(V2 tensors <-> the data plane, model metadata, error statuses), plain Python and numpy,
shared by the REST adapter (:mod:`service.routes.v2`) and the gRPC server."""
