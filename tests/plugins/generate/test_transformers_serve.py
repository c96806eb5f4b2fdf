"""The generate stage against a real server: `transformers serve` on 127.0.0.1 with a tiny Llama
(2 layers, hidden size 64) and a tokenizer trained here, through the real openai client. The
random model answers with noise: every candidate must be rejected as malformed with its raw
text, and nothing else lost."""

import importlib.util
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from curate.testing import assert_complete

SERVING = all(importlib.util.find_spec(name) for name in ("fastapi", "uvicorn"))
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not SERVING, reason="`transformers serve` needs the serving extra: pip install"
                        " 'curate[serve]' (transformers[serving])")]

CHAT_TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<s>assistant\n{% endif %}")
CORPUS = ["Kettles boil water. Returns within 30 days. {\"prompt\": \"a\", \"response\": \"b\"}",
          "Where is my order? It ships on Monday with standard delivery."] * 20


def build_tiny_model(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=2048, bos_token_id=fast.bos_token_id,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"transformers serve exited: {server.stdout.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"transformers serve did not answer {url} within {seconds} s")


@pytest.fixture
def transformers_server(tmp_path):
    port = free_port()
    command = [str(Path(sys.executable).parent / "transformers"), "serve", "--host", "127.0.0.1",
               "--port", str(port), "--device", "cpu", "--default-seed", "0"]
    # Started before the model is built: it loads models on demand, and starting takes longest.
    server = subprocess.Popen(command, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        model = build_tiny_model(tmp_path / "tiny-llama")
        wait_until_up(f"http://127.0.0.1:{port}/health", server, 90)
        yield f"http://127.0.0.1:{port}/v1", str(model)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_random_output_from_a_real_server_is_rejected_as_malformed(transformers_server,
                                                                   run_recipe):
    base_url, model = transformers_server
    data = "".join(f'{{"prompt": "Where is order {i}?", "completion": "It ships Monday."}}\n'
                   for i in range(3))
    recipe = f"""
        [[sources]]
        name = "orders"
        use = "jsonl"
        path = "orders.jsonl"

        [[stages]]
        use = "generate"
        base_url = "{base_url}"
        model = "{model}"
        api_key_env = ""
        max_answer_tokens = 24
        concurrency = 1
        timeout = 60
        strategy = {{use = "self-instruct", count = 2, seeds_per_request = 2}}

        [[stages]]
        use = "review"

        [split]
        eval_fraction = 0
    """
    result = run_recipe(recipe, files={"orders.jsonl": data})
    manifest = assert_complete(result)
    step = manifest["steps"][1]
    assert (step["in"], step["added"], step["kept"], step["rejected"]) == (3, 2, 3, 2)
    rejected = result.rejected("generate")
    assert [r["reason"] for r in rejected] == ["malformed-generation"] * 2
    assert all(r["raw"] and r["messages"][-1]["content"] == r["raw"] for r in rejected)
    assert {r["origin"] for r in rejected} == {"generated"}
    assert len(result.dataset()) == 3  # the input, untouched
    again = run_recipe(recipe, args=["--force"])
    assert_complete(again)
    assert "2 requests (2 answered from the cache)" in again.output
    assert again.rejected("generate") == rejected
