"""Per recorded frontend: how many workflows the converter gets exact, refuses, or gets different.

    python bench/ui_format_fidelity.py [--frontend VERSION] [--list different|refused]

For each frontend in `tests/ui_format/recorded_sets.py` (1.27.10 of ComfyUI 0.3.64, 1.48.7 of
ComfyUI 0.33.0) converts every recording as that frontend would and compares the API graph
with the one the frontend queued. Prints exact / refused / different for the templates and
the hand-made cases. `different` must be 0 everywhere (refusing is allowed);
`tests/ui_format/test_convert.py` asserts it per recording.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.ui_format.recorded_sets import SETS, score  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frontend", default=None, help="only this frontend version")
    parser.add_argument("--list", choices=("different", "refused"), default=None,
                        help="also name each workflow with this outcome, and why")
    args = parser.parse_args()
    for recorded in SETS:
        if args.frontend and recorded.frontend != args.frontend:
            continue
        if not recorded.available():
            print(f"frontend {recorded.frontend}: recordings not in this checkout")
            continue
        result = score(recorded)
        for source in ("template", "handmade"):
            counts = result.get(source, {})
            total = sum(len(v) for v in counts.values())
            exact, refused, different = (len(counts.get(k, [])) for k in
                                         ("exact", "refused", "different"))
            share = 100 * exact / total if total else 0.0
            print(f"frontend {recorded.frontend} (ComfyUI {recorded.comfyui}) {source}s: "
                  f"{total}: exact {exact} ({share:.1f}%), refused {refused}, "
                  f"different {different}")
            if args.list:
                reasons = collections.Counter()
                for name, detail in counts.get(args.list, []):
                    print(f"    {name}: {detail}")
                    reasons[detail.split(";")[0][:90]] += 1
                for reason, count in reasons.most_common(15):
                    print(f"  {count:4d}  {reason}")


if __name__ == "__main__":
    main()
