#!/usr/bin/env bash
# Regenerates the SentencePiece test data (committed; tests never run this). Needs Debian's
# `sentencepiece` package (spm_train, spm_encode) and ../shared beside the repo.
#   tiny_bpe.model      BPE, 600 pieces, byte fallback, trained on fortune.val.txt
#   tiny_unigram.model  Unigram, 600 pieces, no normalization rules (a small file), same text
#   cases.json          for each model and each line of texts.txt: the ids spm_encode gives, and
#                       the text spm_decode makes of them
set -euo pipefail
cd "$(dirname "$0")"
shared=${ANVIL_SHARED:-../../../../shared}
common=(--input="$shared/data/fortune.val.txt" --vocab_size=600 --character_coverage=0.995
        --num_threads=1 --seed_sentencepiece_size=100000 --minloglevel=2)
spm_train "${common[@]}" --model_prefix=tiny_bpe --model_type=bpe --byte_fallback=true
spm_train "${common[@]}" --model_prefix=tiny_unigram --model_type=unigram --normalization_rule_name=identity
rm -f tiny_bpe.vocab tiny_unigram.vocab
python3 - <<'PY'
import json, subprocess
texts = open("texts.txt", encoding="utf-8").read().split("\n")[:-1]
out = {"made_by": "spm_encode --output_format=id and spm_decode --input_format=id (Debian sentencepiece 0.1.97), one text per call", "models": {}}
for model in ["tiny_bpe.model", "tiny_unigram.model"]:
    cases = []
    for t in texts:
        r = subprocess.run(["spm_encode", "--model=" + model, "--output_format=id"], input=t + "\n",
                           capture_output=True, text=True, check=True)
        ids = [int(x) for x in r.stdout.split()]
        d = subprocess.run(["spm_decode", "--model=" + model, "--input_format=id"], input=" ".join(map(str, ids)) + "\n",
                           capture_output=True, text=True, check=True)
        cases.append({"text": t, "ids": ids, "decoded": d.stdout[:-1]})
    out["models"][model] = cases
json.dump(out, open("cases.json", "w", encoding="utf-8"), ensure_ascii=False, indent=1)
PY
