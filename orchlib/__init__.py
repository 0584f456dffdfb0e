"""orchlib: online orchestration of DNN inference in multi-user end-edge-cloud networks."""
