"""A request body read into memory under a size limit, and its multipart form files.

Starlette's own form parser spools files over 1 MiB to temporary files on disk; the service
never writes an upload to disk, so it reads the body itself (refusing it as soon as it passes
the limit, from Content-Length when the client sends one) and splits it with python-multipart's
streaming parser, in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from metastasis.serve.uploads import Upload, UploadError, clean_name


async def read_body(
    stream: AsyncIterator[bytes], content_length: str | None, max_bytes: int
) -> bytes:
    """The whole body, or `UploadError` (413) once it is longer than ``max_bytes``."""
    too_big = UploadError(413, f"upload larger than the limit of {max_bytes} bytes")
    if content_length is not None and content_length.isdigit() and int(content_length) > max_bytes:
        raise too_big
    body = bytearray()
    async for chunk in stream:
        body += chunk
        if len(body) > max_bytes:
            raise too_big
    return bytes(body)


def form_files(body: bytes, content_type: str) -> list[Upload]:
    """The file parts of a ``multipart/form-data`` body (fields without a file name are skipped)."""
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadError(
            415, "send the images as multipart/form-data file fields (e.g. curl -F files=@x.png)"
        )
    parts: list[tuple[dict[bytes, bytes], bytearray]] = []
    field, value = bytearray(), bytearray()

    def on_part_begin() -> None:
        parts.append(({}, bytearray()))

    def on_header_field(data: bytes, start: int, end: int) -> None:
        field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        value.extend(data[start:end])

    def on_header_end() -> None:
        parts[-1][0][bytes(field).lower()] = bytes(value)
        field.clear()
        value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1][1].extend(data[start:end])

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
    }
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise UploadError(400, f"malformed multipart body ({exc})") from None
    files = []
    for headers, data in parts:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        filename = disposition.get(b"filename")
        if filename is not None:
            name = clean_name(filename.decode("utf-8", "replace").replace("\\", "/"))
            files.append(Upload(name, bytes(data)))
    return files
