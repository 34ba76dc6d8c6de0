"""Answer a prompt with a trained adapter: the base model loaded as the run loaded it (4-bit), the adapter on top,
the prompt rendered with the chat template training used, tokens printed as they come.

examples:
  qlorafit generate runs/qlorafit --prompt "What is the capital of Peru?"
  qlorafit generate runs/qlorafit/checkpoints/step-200 --prompt "Hi" --max-new-tokens 32
  qlorafit generate runs/qlorafit --prompt "Once upon a time" --raw          # plain text, no chat template
  qlorafit generate runs/qlorafit --prompt "Tell a story" --temperature 0.8  # sample instead of greedy
"""


def add_common(p) -> None:
    p.add_argument("target", metavar="RUN_DIR_OR_ADAPTER",
                   help="a run directory (its final/ adapter, else its newest checkpoint) or an adapter directory")
    p.add_argument("--system", help="a system message before the conversation")
    p.add_argument("--max-new-tokens", type=int, default=256, help="most tokens to generate (default %(default)s)")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="0: greedy, the same answer every time; above 0: sampling (default %(default)s)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: the GPU if there is one)")


def add_arguments(p) -> None:
    add_common(p)
    p.add_argument("--prompt", required=True, help="the user message (with --raw: the text to continue)")
    p.add_argument("--raw", action="store_true", help="continue the prompt as plain text, without the chat template")


def load(a):
    """(the generator, its target, a streamer that prints the reply's tokens as they come)."""
    import torch
    from transformers import TextStreamer

    from qlorafit.errors import UserError
    from qlorafit.runtime.generation import find_adapter, load_generator

    if a.max_new_tokens < 1:
        raise UserError("--max-new-tokens: must be at least 1")
    target = find_adapter(a.target)
    try:
        device = torch.device(a.device) if a.device else None
    except RuntimeError as e:
        raise UserError(f"--device: {e}") from None
    gen = load_generator(target, device)
    return gen, target, TextStreamer(gen.tokenizer, skip_prompt=True, skip_special_tokens=True)


def run(a) -> int:
    import sys

    from qlorafit.runtime.generation import reply

    gen, _, streamer = load(a)
    messages = ([{"role": "system", "content": a.system}] if a.system and not a.raw else [])
    messages.append({"role": "user", "content": a.prompt})
    reply(gen, messages, a.max_new_tokens, a.temperature, streamer=streamer, raw=a.raw)
    sys.stdout.flush()
    return 0
