"""Merge a LoRA adapter into a 16-bit copy of the base model, one tensor at a time: host RAM holds one shard, the
GPU one weight, so a 70B model merges on any machine. The result loads with AutoModelForCausalLM.from_pretrained.

  qlorafit merge --adapter runs/qlorafit/final --base meta-llama/Llama-3.1-8B --out merged-8b
"""

from qlorafit.core import options as O


def add_arguments(p) -> None:
    p.add_argument("--adapter", required=True, help="PEFT adapter directory (a run's final/ or checkpoints/step-N/)")
    p.add_argument("--base", required=True, help="the 16-bit base model: a directory, a catalogue name or a Hub id (downloaded once into the HF cache)")
    p.add_argument("--out", required=True, help="new directory for the merged model")
    p.add_argument("--dtype", choices=("auto",) + O.names(O.DTYPES), default="auto",
                   help="dtype of the written weights (auto: the base checkpoint's own; default %(default)s)")
    p.add_argument("--device", default="auto", help="where the B @ A products run: auto (GPU if any), cpu, cuda:0")
    p.add_argument("--any-base", action="store_true", help="merge even though --base is not the model the adapter "
                   "records as its base (for the same model copied elsewhere); the shapes are still checked")


def run(a) -> int:
    from qlorafit.core.catalog import resolve_model_path
    from qlorafit.runtime.merge import merge

    base = resolve_model_path(a.base, field="--base")
    s = merge(a.adapter, base, a.out, a.dtype, a.device, base_name=a.base, any_base=a.any_base)
    for note in s["notes"]:
        print(f"note: {note}")
    print(f"merged {s['merged']} LoRA modules ({s['replaced']} full modules replaced) into {s['tensors']} tensors "
          f"on {s['device']}: {s['out']}")
    return 0
