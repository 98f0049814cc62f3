"""A uid in an update or patch body is a precondition, as upstream: another object of the same
name (deleted and re-created meanwhile) answers 409 and is left untouched."""
from __future__ import annotations

import asyncio

import pytest

from kubelab.client.rest import ApiError, Client

pytestmark = pytest.mark.integration


def test_uid_in_body_is_a_precondition(control_plane, namespace):
    async def main():
        async with Client.from_kubeconfig(str(control_plane.kubeconfig), component="uid-test") as c:
            cm = await c.create("v1", "configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                                     "metadata": {"name": "x"}, "data": {"v": "1"}}, namespace)
            old_uid = cm["metadata"]["uid"]
            await c.delete("v1", "configmaps", namespace, "x")
            new = await c.create("v1", "configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                                      "metadata": {"name": "x"}, "data": {"v": "2"}}, namespace)
            with pytest.raises(ApiError) as e:
                await c.patch("v1", "configmaps", namespace, "x", {"metadata": {"uid": old_uid, "labels": {"a": "b"}}})
            assert e.value.code == 409
            assert e.value.message == (f'Operation cannot be fulfilled on configmaps "x": Precondition failed: UID in '
                                       f'precondition: {old_uid}, UID in object meta: {new["metadata"]["uid"]}')
            stale = dict(new, data={"v": "3"})
            stale["metadata"] = {k: v for k, v in new["metadata"].items() if k != "resourceVersion"}
            stale["metadata"]["uid"] = old_uid
            with pytest.raises(ApiError) as e:
                await c.update("v1", "configmaps", stale, namespace)
            assert e.value.code == 409
            cur = await c.get("v1", "configmaps", namespace, "x")
            assert cur["data"] == {"v": "2"} and not cur["metadata"].get("labels")
            # the right uid goes through
            await c.patch("v1", "configmaps", namespace, "x", {"metadata": {"uid": new["metadata"]["uid"],
                                                                             "labels": {"a": "b"}}})
            assert (await c.get("v1", "configmaps", namespace, "x"))["metadata"]["labels"] == {"a": "b"}
    asyncio.run(main())
