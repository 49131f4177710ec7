from wsloop.broker import MAX_RUN_BYTES, MAX_RUN_MESSAGES, consecutive_runs


def test_runs_group_consecutive_messages_of_one_channel():
    messages = [("a", b"1"), ("a", b"2"), ("b", b"3"), ("a", b"4")]
    assert list(consecutive_runs(messages)) == [("a", [b"1", b"2"]), ("b", [b"3"]), ("a", [b"4"])]


def test_runs_are_bounded_in_count_and_bytes():
    many = [("a", b"x")] * (MAX_RUN_MESSAGES + 1)
    assert [len(run) for _, run in consecutive_runs(many)] == [MAX_RUN_MESSAGES, 1]
    big = [("a", b"x" * (MAX_RUN_BYTES // 2 + 1))] * 3
    assert [len(run) for _, run in consecutive_runs(big)] == [1, 1, 1]


def test_no_messages_no_runs():
    assert list(consecutive_runs([])) == []
