"""Measure the CUDA context of this machine: the device memory a training process holds outside PyTorch's allocator.

The estimator adds it to every phase (qlorafit.core.estimate.CUDA_CONTEXT_BYTES, 767 MiB, measured on an H200 with
CUDA 13 and torch 2.11 in the calibration runs). It is not a constant of every card: it grows with the number of
SMs, the CUDA version (lazy module loading), the kernels a run touches and the cuBLAS workspace, so a consumer card
often holds 300-600 MiB and a datacenter card more. `qlorafit estimate --measure-context` runs the kernels a QLoRA
step uses (a bf16 matmul forward and backward, sdpa, a 4-bit matmul when bitsandbytes can run here), then reads
(total - free) - reserved: exactly what calibrate.py subtracts from nvidia-smi's figure.
"""

import torch


def measure_context_bytes(device: int = 0) -> dict:
    """{'context_bytes', 'gpu', 'cuda', 'torch', 'steps'}: what this process holds outside the allocator."""
    if not torch.cuda.is_available():
        from qlorafit.errors import UserError

        raise UserError("--measure-context needs a CUDA GPU on this machine; elsewhere the estimate uses the H200 "
                        "figure (767 MiB), or give your own with --context-mib")
    dev = torch.device("cuda", device)
    torch.cuda.set_device(dev)
    steps = []
    x = torch.randn(512, 1024, device=dev, dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(1024, 1024, device=dev, dtype=torch.bfloat16, requires_grad=True)
    (x @ w).float().square().mean().backward()  # cuBLAS handle + workspace, forward and backward kernels
    steps.append("bf16 matmul fwd+bwd")
    q = torch.randn(1, 8, 256, 64, device=dev, dtype=torch.bfloat16, requires_grad=True)
    torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True).sum().backward()
    steps.append("sdpa fwd+bwd")
    try:
        import bitsandbytes as bnb

        lin = bnb.nn.Linear4bit(1024, 1024, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4").to(dev)
        lin(x).sum().backward()
        steps.append("bitsandbytes nf4 matmul fwd+bwd")
        del lin
    except Exception as e:  # noqa: BLE001 -- bitsandbytes missing or without this GPU's kernels: measure the rest
        steps.append(f"bitsandbytes skipped ({type(e).__name__})")
    torch.cuda.synchronize(dev)
    del x, w, q
    free, total = torch.cuda.mem_get_info(dev)
    return {"context_bytes": (total - free) - torch.cuda.memory_reserved(dev), "gpu": torch.cuda.get_device_name(dev),
            "cuda": torch.version.cuda, "torch": torch.__version__, "steps": steps}
