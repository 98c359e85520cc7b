from kubetask.core.tokens import hash_api_key, task_token, verify_task_token


def test_task_token_is_bound_to_the_task_identity() -> None:
    token = task_token("secret", "kubetask-alice", "train", "uid-1")
    assert verify_task_token("secret", "kubetask-alice", "train", "uid-1", token)
    # the same name recreated (new uid), another namespace, or another secret must not verify
    assert not verify_task_token("secret", "kubetask-alice", "train", "uid-2", token)
    assert not verify_task_token("secret", "kubetask-bob", "train", "uid-1", token)
    assert not verify_task_token("other", "kubetask-alice", "train", "uid-1", token)


def test_api_key_hash_is_sha256_hex() -> None:
    digest = hash_api_key("dev-alice-key")
    assert len(digest) == 64 and digest != "dev-alice-key"
    assert digest == hash_api_key("dev-alice-key")
    assert digest != hash_api_key("dev-bob-key")
