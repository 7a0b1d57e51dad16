"""Protocol adapters: HTTP bodies <-> named tensors. No protocol logic below these."""
