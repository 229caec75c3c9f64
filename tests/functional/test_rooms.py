"""Rooms of participants: each publishes and receives over one renegotiated connection."""

from __future__ import annotations

from tests.conftest import RunningGateway
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import wait_for
from tests.support.room_client import Participant

SIZES = {"ann": (320, 240), "bob": (352, 288), "cid": (384, 216), "dee": (256, 144)}


async def join_and_publish(gateway: RunningGateway, name: str) -> Participant:
    participant = await Participant.join(gateway.http, gateway.base, "meeting", name)
    width, height = SIZES[name]
    await participant.add_tracks(
        [(NumberedVideoTrack(width, height), "camera"), (ToneTrack(), "microphone")]
    )
    return participant


async def watch_everyone(participant: Participant) -> dict[str, str]:
    """Subscribe to every other participant's tracks; returns track id -> owner."""
    owners = {}
    for track_id, track in participant.room_tracks().items():
        if track["participant"] != participant.id and track_id not in participant.received:
            await participant.watch(track_id, track["kind"])
            owners[track_id] = track["participant"]
    return owners


def video_of(participant: Participant, owner: Participant) -> str:
    (track_id,) = [
        t
        for t, info in participant.room_tracks().items()
        if info["participant"] == owner.id and info["kind"] == "video"
    ]
    return track_id


async def test_three_participants_see_each_other_then_one_leaves_and_one_joins_late(
    gateway: RunningGateway,
) -> None:
    ann = await join_and_publish(gateway, "ann")
    bob = await join_and_publish(gateway, "bob")
    cid = await join_and_publish(gateway, "cid")
    people = [ann, bob, cid]
    await wait_for(lambda: all(len(p.room_tracks()) == 4 for p in people), timeout=20)
    for p in people:
        await watch_everyone(p)

    def decoding(viewer: Participant, owner: Participant, frames: int) -> bool:
        got = viewer.received.get(video_of(viewer, owner))
        return got is not None and len(got.numbers) >= frames

    pairs = [(v, o) for v in people for o in people if v is not o]
    await wait_for(lambda: all(decoding(v, o, 30) for v, o in pairs), timeout=40)
    for viewer, owner in pairs:
        got = viewer.received[video_of(viewer, owner)]
        assert got.sizes == {SIZES[owner.name]}, (viewer.name, owner.name, got.sizes)
        assert got.numbers == sorted(got.numbers), "frames out of order"
    # Audio from both others arrives at each participant (two audio subscriptions).
    await wait_for(
        lambda: all(
            sum(1 for r in p.received.values() if r.audio_frames > 10) == 2 for p in people
        ),
        timeout=20,
    )
    stats = await gateway.stats()
    (room,) = stats["rooms"]
    assert room["participants"] == 3 and len(room["tracks"]) == 6
    assert all(t["frames_decoded"] == 0 for t in room["tracks"])
    assert all(t["subscribers"] == 2 for t in room["tracks"])

    # Ann leaves: the others are told, and her frames stop.
    ann_video = video_of(bob, ann)
    await ann.close()
    for p in (bob, cid):
        await p.client.next("participant-left")
        assert any(
            e["type"] == "track-unpublished" and e["track"] == ann_video for e in p.client.events
        )
    await wait_for(lambda: len(gateway.registry.sessions) == 2)
    count = len(bob.received[ann_video].numbers)
    target = len(bob.received[video_of(bob, cid)].numbers) + 20
    await wait_for(lambda: decoding(bob, cid, target))
    assert len(bob.received[ann_video].numbers) == count

    # Dee joins late: the room state lists everyone's tracks, and she receives them all.
    dee = await join_and_publish(gateway, "dee")
    assert {p["name"] for p in dee.joined["room"]["participants"]} == {"bob", "cid", "dee"}
    assert len(dee.room_tracks()) == 4
    await watch_everyone(dee)
    await wait_for(lambda: decoding(dee, bob, 20) and decoding(dee, cid, 20), timeout=30)
    assert dee.received[video_of(dee, bob)].sizes == {SIZES["bob"]}
    # ...and the others see her.
    await wait_for(lambda: any(i["participant"] == dee.id for i in bob.room_tracks().values()))
    await watch_everyone(bob)
    await wait_for(lambda: decoding(bob, dee, 20), timeout=30)

    for p in (bob, cid, dee):
        await p.close()
    await wait_for(lambda: not gateway.registry.sessions and not gateway.registry.rooms)


async def test_renegotiation_publish_more_unpublish_and_resubscribe(
    gateway: RunningGateway,
) -> None:
    ann = await Participant.join(gateway.http, gateway.base, "reneg", "ann")
    bob = await Participant.join(gateway.http, gateway.base, "reneg", "bob")
    (camera,) = await ann.add_tracks([(NumberedVideoTrack(320, 240), "camera")])
    await bob.watch(camera, "video")
    await wait_for(lambda: len(bob.received[camera].numbers) >= 20, timeout=30)

    # A second track mid-session (a screen), on the same connection.
    (screen,) = await ann.add_tracks([(NumberedVideoTrack(640, 360), "screen")])
    await wait_for(lambda: screen in bob.room_tracks())
    assert bob.room_tracks()[screen]["source"] == "screen"
    await bob.watch(screen, "video")
    await wait_for(lambda: len(bob.received[screen].numbers) >= 20, timeout=30)
    assert bob.received[screen].sizes == {(640, 360)}

    # Unsubscribe and subscribe again, five times, reusing the transceiver.
    for _ in range(5):
        await bob.unwatch(camera)
        frozen = len(bob.received[camera].numbers)
        await bob.watch(camera, "video")
        await wait_for(lambda: len(bob.received[camera].numbers) >= frozen + 10, timeout=30)  # noqa: B023
    assert len(bob.pc.getTransceivers()) == 2, "transceivers were not reused"
    numbers = bob.received[camera].numbers
    assert numbers == sorted(numbers), numbers

    # Mute pauses forwarding without tearing anything down; unmute resumes.
    await ann.client.send({"type": "mute", "track": camera, "muted": True})
    muted = await bob.client.next("track-muted")
    assert muted["track"] == camera and muted["muted"] is True
    paused = len(bob.received[camera].numbers)
    screen_at = len(bob.received[screen].numbers)
    await wait_for(lambda: len(bob.received[screen].numbers) >= screen_at + 30)
    assert len(bob.received[camera].numbers) <= paused + 2, "a muted track kept flowing"
    await ann.client.send({"type": "mute", "track": camera, "muted": False})
    await wait_for(lambda: len(bob.received[camera].numbers) >= paused + 10, timeout=30)

    # Unpublish the camera: bob is told and stops receiving it; the screen goes on.
    await ann.client.send({"type": "unpublish", "track": camera})
    event = await bob.client.next("track-unpublished")
    assert event["track"] == camera
    stopped_at = len(bob.received[camera].numbers)
    screen_at = len(bob.received[screen].numbers)
    await wait_for(lambda: len(bob.received[screen].numbers) >= screen_at + 20)
    assert len(bob.received[camera].numbers) <= stopped_at + 1

    await ann.close()
    await bob.close()
    await wait_for(lambda: not gateway.registry.sessions)
