"""Talk with a trained adapter in the terminal. The whole conversation goes through the model's chat template each
turn, so the model sees what it was trained on; replies stream as they are generated.

  qlorafit chat runs/qlorafit
  qlorafit chat runs/qlorafit --system "Answer in one sentence."

Commands at the prompt: /reset starts a new conversation, /exit (or Ctrl-D) quits.
"""

from qlorafit.commands.generate import add_common as add_arguments, load  # noqa: F401 (the cli calls add_arguments)


def run(a) -> int:
    import sys

    from qlorafit.runtime.generation import reply

    gen, target, streamer = load(a)
    first = [{"role": "system", "content": a.system}] if a.system else []
    messages = list(first)
    print(f"chatting with {target.adapter} on {target.cfg.model.name_or_path}: /reset to start over, /exit to quit",
          file=sys.stderr)
    while True:
        try:
            line = input("you> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        text = line.strip()
        if text in ("/exit", "/quit"):
            return 0
        if text == "/reset":
            messages = list(first)
            continue
        if not text:
            continue
        messages.append({"role": "user", "content": text})
        print("model> ", end="", flush=True)
        answer = reply(gen, messages, a.max_new_tokens, a.temperature, streamer=streamer)
        messages.append({"role": "assistant", "content": answer.strip()})
