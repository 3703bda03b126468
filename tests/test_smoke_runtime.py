import msgspec

from contracts.commands import reply_decoder


async def test_engines_answer_status(engines, nc):
    for slug in engines:
        reply = reply_decoder.decode((await nc.request(f"aoc.ctl.{slug}.status", b"", timeout=2)).data)
        assert reply.ok and reply.state == "running", msgspec.to_builtins(reply)
