"""The doctor reads the model's size and the GPUs from a report's words (qlorafit.doctor.prose), in the forms people
write them in English and Chinese; and the evidence the rules weigh (gpu_count, card_bytes, model_params) is what
prose reads. Sentences here are made up in the style of public OOM reports, not copied from them."""

import pytest

from qlorafit.core import catalog
from qlorafit.core.sizes import GIB
from qlorafit.doctor import Inputs, diagnose
from qlorafit.doctor import evidence as E
from qlorafit.doctor.prose import gpus, model_params_b


def _gib(text: str) -> float | None:
    b = gpus(text).memory_bytes
    return round(b / GIB, 1) if b else None


# --- how many GPUs --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,count", [
    # a count times a size, with no card named
    ("我在4*80G的机器上做全参训练", 4), ("training on 2x48GB, zero3", 2), ("16 × 32GB nodes are not enough", 16),
    # Chinese measure words, with or without a size and 的
    ("用4张40G的卡做lora", 4), ("6块24G显卡", 6), ("4张A100跑不起来", 4), ("服务器是3个48G的P6000", 3),
    ("我有2台A6000", 2),
    # Chinese numerals
    ("三张h100全量微调", 3), ("两块3090", 2), ("双卡A6000", 2), ("十张V100", 10), ("八卡A100", 8), ("用了四张卡", 4),
    ("单卡4090", 1), ("一张A100", 1),
    # English number words
    ("three 24gb 3090s", 3), ("on a pair of A6000s", 2), ("dual RTX 4090 box", 2), ("four H100 GPUs", 4),
    ("with eight GPUs", 8), ("two GPUs", 2),
    # forms read before: kept
    ("2*A800 80G", 2), ("4 A100 40G", 4), ("4卡3090", 4), ("4*A100（每块40G）", 4), ("single card A100 40G", 1),
    ("V100-32G * 8", 8), ("Number of gpus: 4", 4), ("8xH100", 8), ("4xNVIDIA-H200", 4), ("4x Tesla V100", 4), ("on 3 GPUs", 3),
])
def test_the_gpu_count_in_the_words(text, count):
    assert gpus(text).count == count


@pytest.mark.parametrize("text", [
    "4 processes on the node", "transformers 4.36 and an A100", "python 3.10, A100", "第一张卡满了", "两张图片 OOM",
    "step 8 of 100", "num_train_epochs 3, 4090", "on device gpu:1 of a 4090", "on A100s", "on A100 GPUs",
])
def test_what_is_not_a_gpu_count(text):
    assert gpus(text).count is None


@pytest.mark.parametrize("text", [
    # a number near the card is not its count; the one card named is
    "3 epochs on an A100", "batch 16 on an A100", "since 2023, on an A100", "gpus=0,1 on a 4090",
    # one card named with an article or a possessive (session 12: the setup facts' 'how many GPUs' is not asked)
    "running on a V100 32G", "using an A100 40GB card", "OOM on my RTX 4090", "on an L40S", "一块3090",
])
def test_one_card_named_is_one_gpu(text):
    assert gpus(text).count == 1


# --- one GPU's memory -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,gib", [
    # a size said per card beats the catalogue's larger variant of the named card
    ("16 A100 GPUs (40GB each, on two nodes of 8)", 40), ("2 x A100, 40 GB each", 40), ("4*A100（每张40G）", 40),
    ("A100s with 40GB per GPU", 40), ("每块卡40G内存", 40),  # 内存 said per card is the card's
    # a size written next to the card beats the catalogue; laptop and mobile variants
    ("3070laptop 8GB", 8), ("RTX 4090 Laptop GPU 16GB", 16), ("a 4060 mobile (8GB)", 8), ("RTX 4070 TI 12GB", 12),
    ("显卡A100 40G", 40), ("2*A800 80G", 80), ("4 A100 40G", 40), ("three 24gb 3090s", 24), ("A100-40GB x 2", 40),
    # a size with no card: count times size, N张<size>的卡, N个<size>的<card>
    ("我在4*80G的机器上做全参训练", 80), ("用4张40G的卡做lora", 40), ("服务器是3个48G的P6000", 48), ("6块24G显卡", 24),
    ("4090 24G显存", 24), ("its 96G per GPU", 96),
    # the catalogue's card when no size is written
    ("4卡3090", 24), ("三张h100全量微调", 80), ("on a pair of A6000s", 48), ("a T4 instance", 15),
    ("one NVIDIA H100 NVL 94GB GPU", 94), ("4xNVIDIA-H200", 140),
])
def test_one_gpus_memory_in_the_words(text, gib):
    assert _gib(text) == pytest.approx(gib, abs=0.5)


@pytest.mark.parametrize("text,gib", [
    ("每张卡只用了20G", None), ("每块卡只占用了15G内存", None), ("显存占用了13G就OOM了", None), ("the job uses 30GB on each card", None),
    ("it was using 22GB when it died", None), ("Tried to allocate 20.00 GiB", None),
    ("256G内存", None), ("a box with 1TB RAM", None), ("64GB RAM", None), ("CPU memory 512G", None),
    ("host memory: 128GB", None), ("system RAM 96G", None),
    # a usage or host RAM next to a card's capacity does not replace it
    ("A100 40G, 256G内存", 40), ("RTX 3090, 64GB RAM", 24), ("4090 24G显存，占用了23G", 24),
    ("a 3090 but it only uses 12GB", 24), ("4 X 4090; 推理时显存占用约为4 x 20G", 24),
    ("the largest tensor on the GPU is 2gb", None),
    # a count times a size said elsewhere (another reply's machine) does not replace a known card's memory
    ("OOM on 8xH100\nsame here on 4xL4 (4 x 24 GB)", 80),
])
def test_usage_and_host_ram_are_not_a_gpus_memory(text, gib):
    assert _gib(text) == (pytest.approx(gib, abs=0.5) if gib else None)


# --- the model's size -----------------------------------------------------------------------------------------------

def test_a_mixture_of_experts_named_in_the_catalogue_has_the_catalogues_count():
    total = catalog.resolve_model("mixtral-8x7b").total_params() / 1e9  # about 46.7: the experts share attention
    for text in ("mixtral8*7B", "Mixtral 8x7B", "Mixtral-8x7B-Instruct-v0.1", "微调mixtral 8*7b爆显存"):
        assert model_params_b(text) == pytest.approx(total, rel=1e-6), text
    assert total < 8 * 7 * 0.9  # not eight whole 7B models


def test_a_mixture_of_experts_not_in_the_catalogue_is_less_than_n_times_its_size():
    b = model_params_b("fine-tuning MyMoE-8x22B")
    assert 135 < b < 150  # Mixtral 8x22B has 141B: its experts share attention and embeddings
    assert model_params_b("an 8x22B MoE") == b


@pytest.mark.parametrize("text,params", [
    ("Qwen2.5vl7B", 7), ("LLaVA-v1.6-34B", 34), ("7B的Qwen模型", 7), ("Yi-6B", 6), ("vicuna-13b", 13),
    ("Llama 3 70b", 70), ("InternVL2-8B", 8), ("Qwen3-30B-A3B", 30), ("Qwen2.5-0.5B-Instruct", 0.5),
    ("a 60亿参数的模型", 6), ("Running Falcon 40B on a card", 40),
    # not a model's size
    ("Qwen1.5-MoE-A2.7B", None), ("pretrained on 1.5B tokens", None), ("Unable to allocate 12 bytes", None),
    ("load_in_4bit", None), ("1亿条数据", None),
])
def test_the_model_size_in_the_words(text, params):
    assert model_params_b(text) == params


@pytest.mark.parametrize("text,params", [
    # a name that has one size, said without it (session 12)
    ("running ChatGLM on a 3060 laptop", 6.2), ("chatglm3 lora", 6.2), ("Mixtral qlora on 2 A100", 46.7),
    ("t5-base with Seq2SeqTrainer", 0.25), ("finetune gpt2-xl in 8bit", 1.56), ("glm-4 sft", 9.4),
    ("flan-t5-xxl", 11.1), ("Qwen-VL-Chat inference", 9.6),
    # the size written next to the name wins, and agrees
    ("chatglm2-6b", 6), ("chatglm-6b-int4", 6), ("Mixtral-8x7B-Instruct", pytest.approx(46.7, rel=0.01)),
    ("Mixtral 8x22B", pytest.approx(141, rel=0.02)),
    # names with several sizes, or stored in another precision, are not sized by name
    ("GLM-4.5 air", None), ("DeepSeek-R1 on 8xH200", None), ("baichuan2 on a V100", None), ("gpt-oss lora", None),
])
def test_a_model_known_by_a_name_with_one_size(text, params):
    assert model_params_b(text) == params


def test_two_models_named_the_title_line_wins_then_the_one_trained_now():
    assert model_params_b("OOM fine-tuning llama3-8b\nthe same script worked for qwen-14b") == 8
    assert model_params_b("爆显存\n之前对qwen7b的模型微调没问题，现在对于llama2-13b的模型就OOM了") == 13
    assert model_params_b("CUDA OOM\nWith vicuna-13b I get OOM, while llama-7b is fine now") == 13  # 7b works
    assert model_params_b("phi-3 3.8b OOMs, yet gemma 2b works") == 3.8  # in the title too
    assert model_params_b("OOM\nllama-13b doesn't work, llama-7b is fine") == 13  # 'doesn't work' is not working
    assert model_params_b("OOM\nqwen-7b SFT, then other 7B runs, and a qwen-3b run") == 7  # named most often
    assert model_params_b("CUDA OOM\nI tried llama-7b and llama-13b") is None  # truly ambiguous: no guess
    assert model_params_b("OOM\nloading Llama-2-7b-hf from models--meta-llama--Llama-2-7b-hf") == 7  # one size, twice


# --- the evidence the rules weigh reads prose -----------------------------------------------------------------------

def _case(text):
    return diagnose(Inputs(error_text=text)).case


@pytest.mark.parametrize("text,count", [
    ("我在4*80G的机器上做全参训练，CUDA out of memory", 4), ("three 24gb 3090s: CUDA out of memory", 3),
    ("8 processes, CUDA out of memory", None), ("2 epochs then CUDA out of memory", None),
    ("4x Tesla V100: CUDA out of memory", 4),
])
def test_gpu_count_is_what_prose_reads(text, count):
    assert E.gpu_count(_case(text)) == count == gpus(text).count


def test_card_bytes_is_the_size_said_per_card():
    c = _case("16 A100 GPUs (40GB each): CUDA out of memory")
    assert E.card_bytes(c) == 40 * GIB


def test_model_params_is_the_catalogues_mixture_of_experts():
    named = E.model_params(_case("Mixtral 8x7B LoRA: CUDA out of memory"))
    assert named is not None and named[0] == pytest.approx(46.7, abs=0.1) and named[1] == "the report"
