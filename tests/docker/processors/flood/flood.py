"""What the flood processor writes, shared by run.py (in the container) and mock.py (in-process).

``inputs``: ``stdout_bytes`` / ``stderr_bytes`` (that many bytes to each stream, in blocks of
1 MiB that each start with ``block <n>``), ``file_bytes`` (an output ``big.bin`` of that many
bytes), ``secret`` (a value written once per block to stdout, split across two writes).
"""

BLOCK = 1 << 20


def block(n, size=BLOCK):
    head = f"block {n:08d}\n".encode()
    body = (b"0123456789abcdef" * (size // 16 + 1))[: max(0, size - len(head) - 1)] + b"\n"
    return (head + body)[:size]


def blocks(total):
    """``(index, bytes)`` of ``total`` bytes in 1 MiB blocks."""
    n = 0
    done = 0
    while done < total:
        size = min(BLOCK, total - done)
        yield n, block(n, size)
        done += size
        n += 1


def write_file(path, total):
    with open(path, "wb") as f:
        for _, data in blocks(total):
            f.write(data)
