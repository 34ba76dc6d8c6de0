"""Assistant-only masks on the real chat templates of current families (tests/fixtures/chat_templates/SOURCES.md).

Each test renders a conversation with the family's own template and asserts that exactly the assistant's tokens and
its end-of-turn token take loss: decoded, the masked runs are the expected strings, one per assistant turn, and
everything else (system, user, tool results, headers, the newline after an end-of-turn token) is unmasked.
"""

import json

import pytest

from chat_fixtures import FAMILIES, TOOLS, as_sharegpt, family_tokenizer, target_spans, tool_chat
from qlorafit.core.config import DataConfig
from qlorafit.errors import UserError
from qlorafit.runtime.chat_mask import ChatTemplate, encode_chat
from qlorafit.runtime.data import IGNORE, load_data
from qlorafit.runtime.formats import Chat, RecordError, normalize_messages

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of Peru?"},
        {"role": "assistant", "content": "Lima."}, {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": "Welcome."}]
CALL_QWEN = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lima"}}\n</tool_call>'
NOTHINK = "<think>\n\n</think>\n\n"

# (template, chat_template_kwargs) -> (targets of CHAT, targets of tool_chat(0)); None: the template refuses tools
EXPECTED = {
    ("llama3_1", ""): (["Lima.<|eot_id|>", "Welcome.<|eot_id|>"],
                       ["Lima.<|eot_id|>", '{"name": "get_weather", "parameters": {"city": "Lima"}}<|eot_id|>',
                        "Sunny in Lima, 22 C.<|eot_id|>"]),
    ("llama3_2", ""): (["Lima.<|eot_id|>", "Welcome.<|eot_id|>"],
                       ["Lima.<|eot_id|>", '{"name": "get_weather", "parameters": {"city": "Lima"}}<|eot_id|>',
                        "Sunny in Lima, 22 C.<|eot_id|>"]),
    ("qwen2_5", ""): (["Lima.<|im_end|>", "Welcome.<|im_end|>"],
                      ["Lima.<|im_end|>", CALL_QWEN + "<|im_end|>", "Sunny in Lima, 22 C.<|im_end|>"]),
    # thinking on: the last turn's (empty) thinking block is generated, so it is trained; older turns lose theirs
    ("qwen3", "think"): (["Lima.<|im_end|>", NOTHINK + "Welcome.<|im_end|>"],
                         ["Lima.<|im_end|>", CALL_QWEN + "<|im_end|>", NOTHINK + "Sunny in Lima, 22 C.<|im_end|>"]),
    # thinking off: the empty block is part of the generation prompt, so it is not trained
    ("qwen3", "nothink"): (["Lima.<|im_end|>", "Welcome.<|im_end|>"],
                           ["Lima.<|im_end|>", CALL_QWEN + "<|im_end|>", "Sunny in Lima, 22 C.<|im_end|>"]),
    # TRL's training variant: {% generation %} markers (return_assistant_tokens_mask), thinking kept in every turn
    ("qwen3_training", "think"): ([NOTHINK + "Lima.<|im_end|>", NOTHINK + "Welcome.<|im_end|>"],
                                  [NOTHINK + "Lima.<|im_end|>", NOTHINK + CALL_QWEN + "<|im_end|>",
                                   NOTHINK + "Sunny in Lima, 22 C.<|im_end|>"]),
    ("gemma3", ""): (["Lima.<end_of_turn>", "Welcome.<end_of_turn>"], None),
    ("lfm2", ""): (["Lima.<|im_end|>", "Welcome.<|im_end|>"], None),
    ("phi3", ""): (["Lima.<|end|>", "Welcome.<|end|>"], None),
    ("phi3_5", ""): (["Lima.<|end|>", "Welcome.<|end|>"], None),
    ("phi4", ""): (["Lima.<|im_end|>", "Welcome.<|im_end|>"], None),
    ("mistral_nemo", ""): (["Lima.</s>", "Welcome.</s>"],
                           ["Lima.</s>", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Lima"}, '
                            '"id": "call00000"}]</s>', "Sunny in Lima, 22 C.</s>"]),
    # gpt-oss: a history turn ends with <|end|>, the last one with <|return|>; a tool call ends with <|call|>
    ("gptoss", ""): (["<|channel|>final<|message|>Lima.<|end|>", "<|channel|>final<|message|>Welcome.<|return|>"],
                     ["<|channel|>final<|message|>Lima.<|end|>",
                      ' to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Lima"}<|call|>',
                      "<|channel|>final<|message|>Sunny in Lima, 22 C.<|return|>"]),
    ("deepseekv3", ""): (["Lima.<｜end▁of▁sentence｜>", "Welcome.<｜end▁of▁sentence｜>"],
                         ["Lima.<｜end▁of▁sentence｜>",
                          "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
                          '{"city": "Lima"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>',
                          "Sunny in Lima, 22 C.<｜end▁of▁sentence｜>"]),
}
KWARGS = {"": {}, "think": {}, "nothink": {"enable_thinking": False}}


def encode(name, mode, msgs, tools=None, targets=None):
    tok = family_tokenizer(name)
    ct = ChatTemplate(tok, tok.chat_template, KWARGS[mode])
    ids, mask = encode_chat(ct, Chat(normalize_messages(msgs, "rec"), tools, targets), "rec")
    return tok, ct, ids, mask


def test_every_family_is_covered():
    assert {name for name, _ in EXPECTED} == set(FAMILIES)


@pytest.mark.parametrize("name,mode", list(EXPECTED))
def test_exactly_the_assistant_turns_and_their_end_token_take_loss(name, mode):
    tok, ct, ids, mask = encode(name, mode, CHAT)
    assert target_spans(tok, ids, mask) == EXPECTED[(name, mode)][0]
    assert ids == ct.ids(ct.render(normalize_messages(CHAT, "x"), None, False))  # the ids are the template's render
    unmasked = tok.decode([i for i, m in zip(ids, mask) if not m])
    assert "Capital of Peru?" in unmasked and "Thanks" in unmasked
    # Mistral Nemo shows the system prompt only with a final user message, so a training render has none
    assert ("Be brief." in unmasked) == (name != "mistral_nemo")


@pytest.mark.parametrize("name,mode", [k for k, v in EXPECTED.items() if v[1] is not None])
def test_tool_call_turns_take_loss_and_tool_results_do_not(name, mode):
    tok, _, ids, mask = encode(name, mode, tool_chat(0), TOOLS)
    spans = target_spans(tok, ids, mask)
    assert spans == EXPECTED[(name, mode)][1]
    assert "get_weather" in spans[1]  # the call itself is trained, never dropped
    assert not any("22 C, sunny" in s for s in spans)  # the tool's answer is input, not output


@pytest.mark.parametrize("name", ["gemma3", "phi3", "phi3_5", "phi4", "lfm2"])
def test_a_template_without_tools_refuses_tool_data_loudly(name):
    # lfm2 shows the tools list (so the tool's name is in the render) but never the assistant's tool_calls
    with pytest.raises(RecordError) as e:
        encode(name, "", tool_chat(0), TOOLS)
    assert "rec:" in str(e.value)
    assert "does not render tool_calls" in str(e.value) or "roles must alternate" in str(e.value)


def test_reasoning_is_trained_in_the_last_turn_and_dropped_from_history_on_qwen3():
    msgs = [{"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4.", "reasoning_content": "Add them."},
            {"role": "user", "content": "3+3?"},
            {"role": "assistant", "content": "6.", "reasoning_content": "Add again."}]
    tok, _, ids, mask = encode("qwen3", "think", msgs)
    assert target_spans(tok, ids, mask) == ["4.<|im_end|>", "<think>\nAdd again.\n</think>\n\n6.<|im_end|>"]


def test_gpt_oss_trains_the_last_turns_thinking_and_the_call():
    # the template drops a call's analysis text once a final answer follows, and thinking from history turns
    msgs = [{"role": "user", "content": "Weather in Lima?"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": tool_chat(0)[4]["tool_calls"]},
            {"role": "tool", "content": "22 C, sunny"},
            {"role": "assistant", "content": "Sunny, 22 C.", "thinking": "The tool said sunny."}]
    tok, _, ids, mask = encode("gptoss", "", msgs, TOOLS)
    assert target_spans(tok, ids, mask) == [
        ' to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Lima"}<|call|>',
        "<|channel|>analysis<|message|>The tool said sunny.<|end|><|start|>assistant<|channel|>final<|message|>"
        "Sunny, 22 C.<|return|>"]


def test_conversational_prompt_completion_trains_only_the_completion():
    tok, _, ids, mask = encode("qwen2_5", "", CHAT, targets={4})
    assert target_spans(tok, ids, mask) == ["Welcome.<|im_end|>"]


# ---- through the loader: files, formats, the summary -------------------------------------------------------------

def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("name,mode", [("qwen3", "think"), ("qwen3", "nothink"), ("gptoss", "")])
def test_messages_and_sharegpt_forms_of_a_tool_dataset_give_the_same_samples(tmp_path, name, mode):
    tok = family_tokenizer(name)
    rows = [tool_chat(i) for i in range(4)]
    cfg = dict(completion_only=True, max_seq_length=1024, chat_template_kwargs=KWARGS[mode])
    m = load_data(DataConfig(path=write(tmp_path / "m.jsonl", [{"messages": r, "tools": TOOLS} for r in rows]), **cfg),
                  tok).train
    s = load_data(DataConfig(path=write(tmp_path / "s.jsonl", [{"conversations": as_sharegpt(r), "tools": TOOLS}
                                                               for r in rows]), **cfg), tok).train
    assert m.formats == {"messages": 4} and s.formats == {"sharegpt": 4} and not m.bad and not s.bad
    assert [x.input_ids for x in m.samples] == [x.input_ids for x in s.samples]
    assert [x.labels for x in m.samples] == [x.labels for x in s.samples]
    trained = tok.decode([y for y in m.samples[0].labels if y != IGNORE])
    assert "get_weather" in trained and "22 C, sunny" not in trained and "Weather there?" not in trained


def test_formats_are_detected_per_record_and_named_in_the_summary(tmp_path):
    from qlorafit.runtime.data import describe
    tok = family_tokenizer("qwen2_5")
    rows = [{"messages": CHAT}, {"conversations": as_sharegpt(CHAT)}, {"instruction": "Name a day.", "output": "Monday."},
            {"prompt": "2 plus 2 is", "completion": " 4."},
            {"prompt": CHAT[:4], "completion": CHAT[4:]}, {"text": "Plain text."},
            {"question": "no format"}, {"messages": [{"role": "robot", "content": "x"}]}]
    ts = load_data(DataConfig(path=write(tmp_path / "mix.jsonl", rows), completion_only=True), tok).train
    assert ts.formats == {"messages": 1, "sharegpt": 1, "alpaca (chat template)": 1, "prompt_completion": 1,
                          "prompt_completion (messages)": 1, "text": 1}
    assert [w for w, _ in ts.bad] == [f"{tmp_path / 'mix.jsonl'} line 7", f"{tmp_path / 'mix.jsonl'} line 8"]
    assert "cannot tell the format" in ts.bad[0][1] and "unknown role 'robot'" in ts.bad[1][1]
    text = "\n".join(describe(ts))
    assert "2 records dropped" in text and "mix.jsonl line 7" in text and "sharegpt" in text
    pc = ts.samples[4]  # the conversational prompt-completion: only the completion's turn is trained
    assert tok.decode([y for y in pc.labels if y != IGNORE]) == "Welcome.<|im_end|>"
    alpaca = ts.samples[2]
    assert tok.decode([y for y in alpaca.labels if y != IGNORE]) == "Monday.<|im_end|>"
    assert "<|im_start|>user\nName a day.<|im_end|>" in tok.decode(alpaca.input_ids)


def test_column_mapping_and_a_template_file(tmp_path):
    from qlorafit.demo_assets import demo_tokenizer
    from chat_fixtures import TEMPLATES
    tok = family_tokenizer("qwen2_5")
    rows = [{"dialog": CHAT}]
    ts = load_data(DataConfig(path=write(tmp_path / "c.jsonl", rows), columns={"messages": "dialog"},
                              completion_only=True), tok).train
    assert ts.formats == {"messages": 1}
    plain = demo_tokenizer()  # a tokenizer with another template; data.chat_template picks the Qwen2.5 one
    ts2 = load_data(DataConfig(path=write(tmp_path / "d.jsonl", [{"messages": CHAT}]), completion_only=True,
                               chat_template=str(TEMPLATES / "qwen2_5.jinja")), tok).train
    assert ts2.samples[0].input_ids == ts.samples[0].input_ids
    assert "<|im_start|>" not in plain.decode(load_data(DataConfig(path=str(tmp_path / "d.jsonl")), plain)
                                              .train.samples[0].input_ids)


def test_a_dataset_where_no_record_fits_is_one_error_naming_the_first(tmp_path):
    tok = family_tokenizer("phi3")
    with pytest.raises(UserError) as e:
        load_data(DataConfig(path=write(tmp_path / "t.jsonl", [{"messages": tool_chat(0)}] * 2)), tok)
    assert "t.jsonl line 1" in str(e.value) and "does not render tool_calls" in str(e.value)


def test_saved_dataset_directory_and_folder_of_parquet(tmp_path):
    import datasets
    tok = family_tokenizer("qwen2_5")
    rows = [{"messages": CHAT}, {"messages": CHAT[:3]}]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    ts = load_data(DataConfig(path=str(tmp_path / "saved")), tok).train
    assert ts.formats == {"messages": 2} and ts.source.endswith("saved[train]")
    datasets.DatasetDict({"validation": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dd"))
    assert load_data(DataConfig(path=str(tmp_path / "dd"), split="validation"), tok).train.stats.count == 2
    with pytest.raises(UserError, match="has splits validation, not 'train'"):
        load_data(DataConfig(path=str(tmp_path / "dd")), tok)
    (tmp_path / "pq").mkdir()
    datasets.Dataset.from_list([{"text": "one"}, {"text": "two"}]).to_parquet(str(tmp_path / "pq" / "a.parquet"))
    assert load_data(DataConfig(path=str(tmp_path / "pq")), tok).train.formats == {"text": 2}


@pytest.mark.parametrize("name,mode", [("qwen3", "nothink"), ("gptoss", "")])
def test_tool_data_trains_with_assistant_only_loss_on_qwen3_and_gpt_oss(tmp_path, name, mode):
    """Done means: the same multi-turn tool-calling data, as messages and as ShareGPT, trains end to end."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from qlorafit.demo_assets import demo_model_config
    from qlorafit.runtime.train import train
    from test_train_helpers import make_cfg
    tok = family_tokenizer(name)
    mdir = tmp_path / "model"
    cfg = demo_model_config(len(tok))
    cfg.pop("model_type")
    cfg.update(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
               bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**cfg)).save_pretrained(mdir)
    tok.save_pretrained(mdir)
    rows = [tool_chat(i) for i in range(8)]
    for form, data in (("messages", [{"messages": r, "tools": TOOLS} for r in rows]),
                       ("sharegpt", [{"conversations": as_sharegpt(r), "tools": TOOLS} for r in rows])):
        out = tmp_path / form
        run = make_cfg(mdir, write(tmp_path / f"{form}.jsonl", data), out,
                       data={"completion_only": True, "max_seq_length": 512, "chat_template_kwargs": KWARGS[mode]},
                       train={"max_steps": 4, "micro_batch_size": 4})
        summary = train(run, quiet=True)
        assert summary["steps"] == 4 and summary["last_loss"] < summary["first_loss"]
        event = next(json.loads(x) for x in (out / "events.jsonl").read_text().splitlines() if '"data"' in x)
        assert event["formats"] == {form: 8} and event["dropped_count"] == 0
