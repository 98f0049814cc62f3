"""The ImageService's logic: CRI images over the image store and the registry puller."""
from __future__ import annotations

import logging
import time
from typing import Callable

from kubelab.cri import errors
from kubelab.cri.api import api_pb2 as pb
from kubelab.cri.image.pull import Puller
from kubelab.cri.image.reference import InvalidReference
from kubelab.cri.image.registry import Auth, ImageNotFound, RegistryError, Unauthorized
from kubelab.cri.image.store import Image, ImageError, ImageInUse, ImageStore
from kubelab.cri.image.unpack import LayerError

log = logging.getLogger("kubelab.cri.image")


def to_pb(image: Image) -> pb.Image:
    out = pb.Image(id=image.id, repo_tags=image.repo_tags, repo_digests=image.repo_digests, size=image.size,
                   spec=pb.ImageSpec(image=image.id), pinned=image.pinned)
    user = ((image.config or {}).get("config") or {}).get("User") or ""
    name = user.split(":", 1)[0]
    if name.isdigit():
        out.uid.value = int(name)
    elif name:
        out.username = name
    return out


def auth_from_pb(a: pb.AuthConfig | None) -> Auth | None:
    if a is None or not (a.username or a.password or a.auth or a.identity_token or a.registry_token):
        return None
    return Auth(username=a.username, password=a.password, auth=a.auth, identity_token=a.identity_token,
                registry_token=a.registry_token, server_address=a.server_address)


class ImageService:
    def __init__(self, store: ImageStore, puller: Puller, in_use: Callable[[str], str | None]) -> None:
        self.store = store
        self.puller = puller
        self.in_use = in_use

    def list_images(self, f: pb.ImageFilter | None) -> list[pb.Image]:
        if f is not None and f.image.image:
            img = self._get(f.image.image)
            return [to_pb(img)] if img is not None else []
        return [to_pb(i) for i in self.store.list()]

    def _get(self, ref: str) -> Image | None:
        try:
            return self.store.get(ref)
        except InvalidReference:
            return None

    def image_status(self, spec: pb.ImageSpec, verbose: bool) -> pb.ImageStatusResponse:
        resp = pb.ImageStatusResponse()
        img = self._get(spec.image)
        if img is None:
            return resp
        resp.image.CopyFrom(to_pb(img))
        if verbose:
            import json
            resp.info["info"] = json.dumps({"imageSpec": img.config, "manifestDigest": img.manifest_digest,
                                            "chainLayers": img.layers})
        return resp

    async def pull_image(self, spec: pb.ImageSpec, auth: pb.AuthConfig | None) -> str:
        if not spec.image:
            raise errors.InvalidArgument("image must not be empty")
        start = time.monotonic()
        try:
            img = await self.puller.pull(spec.image, auth_from_pb(auth))
        except InvalidReference as e:
            raise errors.InvalidArgument(f"failed to pull image {spec.image!r}: {e}") from None
        except ImageNotFound as e:
            raise errors.NotFound(f"failed to pull and unpack image {spec.image!r}: {e}") from None
        except Unauthorized as e:
            raise errors.CRIError(f"failed to pull and unpack image {spec.image!r}: {e}") from None
        except (RegistryError, LayerError, ImageError) as e:
            raise errors.CRIError(f"failed to pull and unpack image {spec.image!r}: {e}") from None
        log.info("pulled image=%s id=%s in %.2fs", spec.image, img.id, time.monotonic() - start)
        return img.id

    def remove_image(self, spec: pb.ImageSpec) -> None:
        try:
            self.store.remove(spec.image, self.in_use)
        except InvalidReference:
            return
        except ImageInUse as e:
            raise errors.FailedPrecondition(str(e)) from None

    def fs_info(self) -> pb.ImageFsInfoResponse:
        used, inodes, mountpoint = self.store.fs_info()
        u = pb.FilesystemUsage(timestamp=time.time_ns(), fs_id=pb.FilesystemIdentifier(mountpoint=mountpoint))
        u.used_bytes.value = used
        u.inodes_used.value = inodes
        return pb.ImageFsInfoResponse(image_filesystems=[u], container_filesystems=[u])
