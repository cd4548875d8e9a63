"""ui/gallery@1 in its container: the processor contract around ``gallery.make``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import gallery

inputs = json.loads(Path(os.environ["THEORYX_INPUTS"]).read_text())
text, result = gallery.make(inputs, Path(os.environ["THEORYX_WRITE_PREFIX"]), int(os.environ["THEORYX_SEED"]),
                            os.environ.get("UI_SECRET"), lambda p: Path(p).read_bytes())
sys.stdout.write(text)
Path(os.environ["THEORYX_RESULT"]).write_text(json.dumps(result))
