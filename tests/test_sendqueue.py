from wsloop.sendqueue import SendQueue


def test_bounded_in_bytes():
    queue = SendQueue(limit_bytes=10)
    assert queue.push(b"12345")
    assert queue.push(b"12345")
    assert not queue.push(b"1")
    assert queue.queued_bytes == 10 and len(queue) == 2


def test_fifo_and_accounting():
    queue = SendQueue(limit_bytes=100)
    queue.push(b"a")
    queue.push(b"bb")
    assert queue.pop() == b"a"
    assert queue.queued_bytes == 2
    rest = memoryview(b"xyz")[1:]
    queue.push_front(rest)
    assert bytes(queue.pop()) == b"yz"
    assert queue.pop() == b"bb"
    assert queue.queued_bytes == 0 and not queue


def test_clear():
    queue = SendQueue(limit_bytes=100)
    queue.push(b"abc")
    queue.clear()
    assert queue.queued_bytes == 0 and len(queue) == 0


def test_pop_batch_joins_frames_up_to_the_limit():
    queue = SendQueue(limit_bytes=100)
    for frame in (b"aa", b"bb", b"cc", b"dddd"):
        queue.push(frame)
    assert queue.pop_batch(6) == b"aabbcc"
    assert queue.pop_batch(2) == b"dddd"  # a larger frame still goes out whole
    assert queue.queued_bytes == 0 and not queue
