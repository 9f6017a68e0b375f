"""Fuzz driver for request.c, run by test_request_fuzz.py in a process with AddressSanitizer preloaded.

    python fuzz_request_driver.py LIBRARY FEATURE_SPEC_JSON SECONDS

Loads LIBRARY (request.c built with -fsanitize=address,undefined), then feeds it every truncation
of a synthetic request, of one continuing life summaries and of one with horizons, random byte-level
mutations of synthetic requests (with and without life summaries, with horizons) for SECONDS, and a few
pathological bodies. A memory error or undefined behaviour aborts the process (non-zero exit);
a clean run prints the counts and exits 0.
"""

from __future__ import annotations

import ctypes
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from training_src import features as F
from training_src.predmaint_serving import codec, native
from training_src.predmaint_serving import model as M
from training_src.predmaint_serving import reader as R


def main() -> int:
    library, spec_path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    model = M.for_spec(F.FeatureSpec.from_json(Path(spec_path).read_text()))
    lib = ctypes.CDLL(library)
    fn, batch = native.bind_request_functions(lib)
    reader = R.RequestReader(fn, model.spec, model.required, batch, native.bind_life_function(lib))
    assert reader.agrees_with_python(model), "the sanitized build must still agree with the Python path"
    bodies = R.synthetic_requests(model.spec, model.required)
    smallest = [min(bodies, key=len)]
    if reader.life_fn is not None:  # the same requests starting life summaries, then continuing them
        with_life = []
        for body in bodies:
            instances = codec.loads(body)["instances"]
            start = codec.dumps({"instances": [{**inst, "life": {}} for inst in instances]})
            life = codec.read_python(start, model).life
            with_life += [start, codec.dumps({"instances": [{**inst, "life": doc}
                                                            for inst, doc in zip(instances, life, strict=True)]})]
        smallest.append(min(with_life[1::2], key=len))
        bodies += with_life
    # horizons: the request's and each instance's own (read as valid numbers, or declined)
    with_horizon = []
    for body in bodies:
        doc = codec.loads(body)
        with_horizon.append(codec.dumps({**doc, "horizon": 30, "instances": [
            {**inst, "horizon": 12.5 * i} if i % 2 else inst for i, inst in enumerate(doc["instances"])]}))
    smallest.append(min(with_horizon, key=len))
    bodies += with_horizon
    for small in smallest:
        for k in range(len(small) + 1):
            reader.read(small[:k])
    rng = random.Random(0)
    n = taken = 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        b = bytearray(rng.choice(bodies))
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(b))
            op = rng.random()
            if op < 0.4:
                b[at] = rng.choice(b'{}[]:,"\\-+.eE0123456789 tfn\x00\xff\x80')
            elif op < 0.7:
                del b[at:at + rng.randint(1, 20)]
            else:
                b[at:at] = b[at:at + rng.randint(1, 200)]
            if not b:
                b = bytearray(b"{}")
        taken += reader.read(bytes(b)) is not None
        n += 1
    for body in (b'{"instances":[{"readings":[{"x":' + b"[" * 100000 + b"]" * 100000 + b"}]}]}",
                 b'{"instances":[{"readings":[{"cycle":1' + b"0" * 100000 + b"}]}]}",
                 b'{"instances":[{"readings":[{"cycle":1e' + b"9" * 1000 + b"}]}]}",
                 b'{"instances":[{"readings":[{"cycle":0.' + b"1" * 1000 + b"}]}]}", b"", b"{", b'"'):
        assert reader.read(body) is None
    print(f"truncations {sum(len(b) + 1 for b in smallest)}, mutations {n}, taken {taken}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
