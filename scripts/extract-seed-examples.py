#!/usr/bin/env python3
"""Extract every fenced YAML block that holds a whole Kubernetes object from the seed documents
(../shared/seeds/*.txt) into examples/seeds/<seed>-<n>-<kind>-<name>.yaml, unchanged.
Fragments (blocks without a top-level apiVersion and kind) are skipped."""
import pathlib, re, sys

root = pathlib.Path(__file__).resolve().parent.parent
seeds = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else root.parent / "shared" / "seeds"
out = root / "examples" / "seeds"
out.mkdir(parents=True, exist_ok=True)
for f in sorted(seeds.glob("*.txt")):
    seed = f.name.split("_")[0]
    text = f.read_text()
    blocks = re.findall(r"^```[a-zA-Z]*\n(.*?)^```", text, flags=re.S | re.M)
    n = 0
    for b in blocks:
        docs = re.split(r"^---\s*$", b, flags=re.M)
        if not any(re.search(r"^apiVersion:", d, re.M) and re.search(r"^kind:", d, re.M) for d in docs):
            continue
        n += 1
        kind = (re.search(r"^kind:\s*(\S+)", b, re.M) or ["", "x"])[1]
        name = (re.search(r"^  name:\s*(\S+)", b, re.M) or ["", "x"])[1].strip('"')
        (out / f"{seed}-{n:02d}-{kind.lower()}-{name}.yaml").write_text(b)
print("\n".join(sorted(p.name for p in out.iterdir())))
