import json
import math

import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "Qwen/Qwen3-4B"
max_length, stride = 16384, 8192

tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0},
                                             attn_implementation="eager")
model.eval()

with open("books.jsonl") as f:
    text = "\n\n".join(json.loads(line)["text"] for line in f)
encodings = tokenizer(text, return_tensors="pt")
seq_len = encodings.input_ids.size(1)
print(f"{seq_len} tokens")

nll_sum, n_tokens, prev_end_loc = 0.0, 0, 0
for begin_loc in tqdm(range(0, seq_len, stride)):
    end_loc = min(begin_loc + max_length, seq_len)
    trg_len = end_loc - prev_end_loc
    input_ids = encodings.input_ids[:, begin_loc:end_loc].to(model.device)
    target_ids = input_ids.clone()
    target_ids[:, :-trg_len] = -100
    with torch.no_grad():
        outputs = model(input_ids, labels=target_ids)
    num_valid = (target_ids != -100).sum().item() - 1
    nll_sum += outputs.loss.item() * num_valid
    n_tokens += num_valid
    prev_end_loc = end_loc
    if end_loc == seq_len:
        break

print(f"perplexity: {math.exp(nll_sum / n_tokens):.2f}")
