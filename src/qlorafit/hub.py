"""The Hugging Face Hub, in and out, through huggingface_hub: a model's config.json, its weights, and the adapter.

Everything follows the user's environment and nothing here overrides it: HF_HUB_OFFLINE (no network; only the local
cache), HF_TOKEN (gated and private repos), HF_HOME / HF_HUB_CACHE (where files land) and HF_ENDPOINT (a mirror).
Every failure becomes one UserError line saying what to do: accept a licence, log in, check the id, get network.
huggingface_hub is imported inside the functions, so importing this module costs nothing and never needs torch.
"""

import os
from pathlib import Path

from qlorafit.errors import UserError, first_line

# What `train` and `merge` need from a model repo: the safetensors weights and their index, the config, the tokenizer
# (fast tokenizer.json, or the sentencepiece / BPE files some repos still ship) and the generation config. Not the
# .bin/.pth/.gguf copies many repos also hold, which can be several times the model's size.
WEIGHT_PATTERNS = (
    "*.safetensors", "*.safetensors.index.json", "config.json", "generation_config.json",
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json",
)


def looks_like_hub_id(name: str) -> bool:
    """'org/name' with no path-like start, and not an existing local path.

    >>> looks_like_hub_id("Qwen/Qwen3-8B"), looks_like_hub_id("./runs/x"), looks_like_hub_id("llama-3.1-8b")
    (True, False, False)
    """
    name = name.strip()
    return (name.count("/") == 1 and not name.startswith((".", "/", "~")) and not name.endswith("/")
            and " " not in name and not Path(name).expanduser().exists())


def fetch_config(repo_id: str, field: str) -> Path:
    """config.json of `repo_id` (a few KB): from the local cache, else from the Hub unless HF_HUB_OFFLINE is set."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, "config.json"))
    except Exception as e:  # noqa: BLE001 -- mapped by type below; anything unknown is re-raised
        raise hub_error(e, repo_id, field, "config.json") from None


def download_model(repo_id: str, field: str) -> Path:
    """The files `train` and `merge` need (WEIGHT_PATTERNS), downloaded once into the HF cache, with a progress bar.

    Offline (HF_HUB_OFFLINE=1) this returns the cached snapshot if it is complete, and says what is missing if not.
    """
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(repo_id, allow_patterns=list(WEIGHT_PATTERNS)))
    except Exception as e:  # noqa: BLE001
        raise hub_error(e, repo_id, field, "weights") from None
    if not (path / "config.json").is_file():
        raise UserError(f"{field}: {repo_id} has no config.json: not a transformers model repo")
    if not any(path.glob("*.safetensors")):
        raise UserError(f"{field}: {repo_id} has no .safetensors weights (qlorafit does not load pickled .bin "
                        f"files); convert them, or pick a repo that ships safetensors")
    return path


def hub_error(e: Exception, repo_id: str, field: str, what: str) -> Exception:
    """One line for each way a Hub request fails; an error that is not the Hub's comes back unchanged."""
    from huggingface_hub import constants, get_token
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    from qlorafit.core.catalog import model_names

    catalogue_hint = ", ".join(model_names())
    page = f"{constants.ENDPOINT}/{repo_id}"
    offline = constants.HF_HUB_OFFLINE
    if isinstance(e, GatedRepoError):
        return UserError(f"{field}: {repo_id} is gated: accept its licence on {page} with your account, then run "
                         f"`hf auth login` (or set HF_TOKEN) and try again")
    if isinstance(e, RepositoryNotFoundError):
        token = "" if get_token() is not None else " (if it is private, run `hf auth login` or set HF_TOKEN)"
        return UserError(f"{field}: no model '{repo_id}' on {constants.ENDPOINT}{token}; check the id, or use a "
                         f"catalogue name: {catalogue_hint}")
    if isinstance(e, RevisionNotFoundError):
        return UserError(f"{field}: {repo_id}: {first_line(e)}")
    if isinstance(e, (OfflineModeIsEnabled, LocalEntryNotFoundError)) or _is_connection_error(e):
        why = "HF_HUB_OFFLINE is set" if offline else f"the Hub ({constants.ENDPOINT}) cannot be reached"
        fix = (f"run `hf download {repo_id}` where there is network" if what == "weights"
               else f"use a catalogue name ({catalogue_hint}), or a directory holding its config.json")
        return UserError(f"{field}: {repo_id} is not in the local Hugging Face cache and {why}: {fix}")
    return e


def _is_connection_error(e: Exception) -> bool:
    """A network failure, whichever HTTP library huggingface_hub uses underneath (httpx, or its httpx2 fork)."""
    names = {c.__name__ for c in type(e).__mro__}
    return isinstance(e, (ConnectionError, TimeoutError)) or bool(names & {"TransportError", "ConnectError",
                                                                          "TimeoutException", "NetworkError"})


def push_folder(folder: Path, repo_id: str, private: bool, message: str) -> str:
    """Create `repo_id` if needed and upload `folder` to it in one commit; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=message)
    except Exception as e:  # noqa: BLE001
        from huggingface_hub.errors import HfHubHTTPError

        if isinstance(e, HfHubHTTPError) and e.response is not None and e.response.status_code in (401, 403):
            raise UserError(f"push: not allowed to write to {repo_id}: run `hf auth login` with a write token (or "
                            f"set HF_TOKEN)") from None
        if _is_connection_error(e) or type(e).__name__ == "OfflineModeIsEnabled":
            raise UserError(f"push: cannot reach the Hub to upload {repo_id}"
                            f"{' (HF_HUB_OFFLINE is set)' if os.environ.get('HF_HUB_OFFLINE') else ''}") from None
        if isinstance(e, HfHubHTTPError):
            raise UserError(f"push: the Hub refused the upload to {repo_id}: {first_line(e)}") from None
        raise
    return str(getattr(info, "commit_url", info))
