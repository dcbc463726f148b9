"""Writes the seed corpora under fuzz/corpus/<target>/ with independent tools: Debian's python3
torch (torch.save), numpy (np.save / np.savez / np.savez_compressed), zipfile and sentencepiece.
With a saelab executable given, the files of its own writers (cfg.json, config.toml, metrics.jsonl,
sae_weights.safetensors, trainer_state.safetensors) are added from a tiny toy run.
Usage: /usr/bin/python3 fuzz/make_corpus.py fuzz/corpus [build/saelab]"""
import collections
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import torch

out = sys.argv[1]


def put(target, name, data):
    os.makedirs(os.path.join(out, target), exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(os.path.join(out, target, name), mode) as f:
        f.write(data)


# torch.save: an OrderedDict state dict (what real checkpoints are), a nested dict with a
# parameter, shared storage views, and several dtypes.
torch.manual_seed(0)
sd = collections.OrderedDict()
sd["W_enc"] = torch.randn(3, 4)
sd["b_enc"] = torch.zeros(4, dtype=torch.float16)
sd["steps"] = torch.tensor([7], dtype=torch.int64)
for name, obj in [
    ("ordered_dict.pt", sd),
    ("nested.pt", {"model": {"w": torch.nn.Parameter(torch.ones(2, 2))}, "step": 3, "name": "x"}),
    ("views.pt", {"a": (lambda base: base[1:])(torch.arange(6.0)), "t": torch.arange(6.0).view(2, 3).t()}),
    ("bf16_bool.pt", {"h": torch.ones(2, dtype=torch.bfloat16), "m": torch.tensor([True, False])}),
]:
    buf = io.BytesIO()
    torch.save(obj, buf)
    put("torch_pickle", name, buf.getvalue())

# .npy: dtypes, orders, endianness, a 0-d and an empty array; .npz stored and deflated.
arrays = {
    "f32.npy": np.arange(6, dtype=np.float32).reshape(2, 3),
    "f64_fortran.npy": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
    "i16_be.npy": np.arange(4, dtype=">i2"),
    "bool.npy": np.array([True, False, True]),
    "scalar.npy": np.array(3.5, dtype=np.float16),
    "empty.npy": np.zeros((0, 4), dtype=np.uint8),
}
for name, a in arrays.items():
    buf = io.BytesIO()
    np.save(buf, a)
    put("npy", name, buf.getvalue())
for name, save in [("params.npz", np.savez), ("params_deflated.npz", np.savez_compressed)]:
    buf = io.BytesIO()
    save(buf, W_enc=np.ones((2, 3), np.float32), threshold=np.zeros(3, np.float32), b=np.arange(2))
    put("npy", name, buf.getvalue())
    put("zip", name, buf.getvalue())

# zip: stored and deflated entries, an empty entry, a folder entry.
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as z:
    z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    z.writestr(zipfile.ZipInfo("archive/data/"), b"")
    z.writestr("archive/empty", b"")
    z.writestr("archive/deflated.txt", b"abc" * 100, compress_type=zipfile.ZIP_DEFLATED)
put("zip", "mixed.zip", buf.getvalue())
with open(os.path.join(out, "torch_pickle", "ordered_dict.pt"), "rb") as f:
    put("zip", "torch_save.zip", f.read())

# SentencePiece: a BPE and a Unigram model trained on a few sentences, with byte fallback.
try:
    import sentencepiece as spm

    text = "\n".join(["Hello world, it's a small test.", "The cat sat on the mat.",
                      "Numbers 123 and 4567 appear.", "caf\u00e9 na\u00efve r\u00e9sum\u00e9"] * 20)
    for kind, vocab in [("bpe", 320), ("unigram", 300)]:
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(text.split("\n")), model_writer=model,
                                       vocab_size=vocab, model_type=kind, byte_fallback=True,
                                       character_coverage=1.0, minloglevel=2,
                                       normalization_rule_name="identity")
        put("sentencepiece", f"{kind}.model", model.getvalue())
except ImportError:
    print("make_corpus.py: python3-sentencepiece missing; no sentencepiece seeds", file=sys.stderr)

# tokenizer.json: a small GPT-2-style byte-level BPE and a SentencePiece-style one with byte
# fallback, in Hugging Face's layout.
bytes_to_unicode = {}
bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
cs = bs[:]
n = 0
for b in range(256):
    if b not in bs:
        bs.append(b)
        cs.append(256 + n)
        n += 1
byte_chars = [chr(c) for c in cs]
vocab = {c: i for i, c in enumerate(byte_chars)}
merges = ["\u0120 t", "h e", "\u0120t he", "l l", "o r"]
for m in merges:
    vocab[m.replace(" ", "")] = len(vocab)
vocab["<|endoftext|>"] = len(vocab)
gpt2 = {
    "version": "1.0",
    "added_tokens": [{"id": vocab["<|endoftext|>"], "content": "<|endoftext|>", "single_word": False,
                      "lstrip": False, "rstrip": False, "normalized": False, "special": True}],
    "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                      "use_regex": True},
    "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                       "use_regex": True},
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
              "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
              "vocab": vocab, "merges": merges},
}
put("tokenizer_json", "gpt2_bpe.json", json.dumps(gpt2))
sp_vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
for b in range(256):
    sp_vocab["<0x%02X>" % b] = len(sp_vocab)
for piece in ["\u2581", "H", "e", "l", "o", "w", "r", "d", "\u2581H", "ll", "\u2581w", "or"]:
    sp_vocab.setdefault(piece, len(sp_vocab))
gemma = {
    "version": "1.0",
    "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True}
                     for t, i in [("<pad>", 0), ("<eos>", 1), ("<bos>", 2), ("<unk>", 3)]],
    "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
    "pre_tokenizer": None,
    "post_processor": {"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                                  {"Sequence": {"id": "A", "type_id": 0}}],
                       "pair": [], "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}}},
    "decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"}]},
    "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
              "vocab": sp_vocab, "merges": ["\u2581 H", "l l", "\u2581 w", "o r"]},
}
put("tokenizer_json", "sentencepiece_bpe.json", json.dumps(gemma))

# metrics.jsonl lines as written by older runs and by hand: null values, an error line, a torn tail.
put("metrics_jsonl", "torn_tail.jsonl",
    '{"step": 0, "losses/mse_loss": 1.5, "metrics/l0": 12}\n'
    '{"step": 10, "losses/mse_loss": null, "metrics/explained_variance": 0.25}\n'
    '{"step": 20, "error": "stopped: NaN"}\n{"step": 30, "losses/ms')

# safetensors, written from the format's definition: u64 LE header length, JSON header, data.
def safetensors(header, data_bytes):
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + b"\0" * data_bytes


put("safetensors", "several_dtypes.safetensors", safetensors(
    {"__metadata__": {"format": "pt"},
     "W_enc": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
     "b": {"dtype": "BF16", "shape": [2], "data_offsets": [24, 28]},
     "z": {"dtype": "I64", "shape": [0], "data_offsets": [28, 28]}}, 28))
put("safetensors", "empty.safetensors", safetensors({}, 0))


# saelab's own writers, from a toy run small enough that every file fits libFuzzer's 64 KiB.
if len(sys.argv) > 2:
    with tempfile.TemporaryDirectory() as tmp:
        run = os.path.join(tmp, "run")
        sets = ["training_tokens=5120", "train_batch_size_tokens=256", "d_sae=32", "n_checkpoints=1",
                "wandb_log_frequency=4", "lr_warm_up_steps=2", "l1_warm_up_steps=2",
                "l0_warm_up_steps=2", "lr_decay_steps=0", "feature_sampling_window=8"]
        args = [sys.argv[2], "train", "--run-dir", run]
        for kv in sets:
            args += ["--set", kv]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        ckpt = os.path.join(run, "checkpoints", os.listdir(os.path.join(run, "checkpoints"))[0])
        for target, src, name in [
            ("safetensors", os.path.join(run, "final", "sae_weights.safetensors"), "saelab_sae_weights.safetensors"),
            ("safetensors", os.path.join(ckpt, "trainer_state.safetensors"), "saelab_trainer_state.safetensors"),
            ("cfg_json", os.path.join(run, "final", "cfg.json"), "saelab_cfg.json"),
            ("run_config", os.path.join(run, "config.toml"), "saelab_resolved.toml"),
            ("metrics_jsonl", os.path.join(run, "metrics.jsonl"), "saelab_run.jsonl"),
        ]:
            os.makedirs(os.path.join(out, target), exist_ok=True)
            shutil.copyfile(src, os.path.join(out, target, name))
