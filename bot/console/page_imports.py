"""Imports: upload a plan, donation or liaison file, preview it (a dry run), confirm to import;
and the review queue of donation unit names that matched no unit.

Nothing here parses or validates a file: the upload is handed to the importers in
`bot.imports` (the ones the CLI uses), first with `dry_run=True` — the whole import, rolled
back — then, on confirmation, for real (all or nothing). The page only refuses what is not a
spreadsheet at all before the importer sees it, and scopes the import to the page's
jurisdiction by giving the importer an account file that lists only that one: a row naming
another jurisdiction is then refused by the importer itself, row by row, like any bad cell.

The upload waits between preview and confirmation in a private directory named by a random
token (checked strictly: 32 URL-safe characters, nothing else), with a note of who uploaded
it for which jurisdiction; only that user, on that jurisdiction's page, can confirm it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from aiohttp import web
from sqlalchemy import func, select

from bot.console.common import clock, form, page, sessions, settings, staff_for
from bot.console.security import FORM, Staff, audit_actor
from bot.errors import DonorbotError
from bot.imports import ImportFailed, import_donation_file, import_liaison_file, import_plan_file
from bot.imports.checks import shortfall
from bot.imports.issues import ImportIssue
from bot.imports.plan_rows import KIND_LABELS
from bot.imports.review import ReviewError, alias_and_credit, rematch, unmatched_queue
from bot.settings import Settings
from models.donations import Donation

log = logging.getLogger(__name__)

KINDS = {"plan": "计划", "donations": "献血记录", "liaisons": "联络员名录"}
# what the reader accepts (.xls too: the reader refuses it with the way out)
SUFFIXES = (".csv", ".txt", ".tsv", ".xlsx", ".xlsm", ".xls")
TEXT_SUFFIXES = (".csv", ".txt", ".tsv")
UPLOAD_ROOT = Path(tempfile.gettempdir()) / f"donorbot-console-uploads-{os.getuid()}"
UPLOAD_TTL = 24 * 3600.0  # an upload never confirmed is removed after a day
TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")
META = "upload.json"
SNIFF = 64 * 1024

# the first bytes of files people upload by mistake
_MAGIC = (
    (b"\x89PNG", "PNG 图片"),
    (b"GIF8", "GIF 图片"),
    (b"\xff\xd8\xff", "JPEG 图片"),
    (b"BM", "BMP 图片"),
    (b"%PDF", "PDF 文档"),
    (b"MZ", "Windows 程序（.exe/.dll）"),
    (b"\x7fELF", "程序文件"),
    (b"PK\x03\x04", "ZIP 压缩包（.xlsx/.docx 也是这种格式）"),
    (b"\xd0\xcf\x11\xe0", "旧版 Office 文件（.xls/.doc）"),
    (b"Rar!", "RAR 压缩包"),
    (b"7z\xbc\xaf", "7z 压缩包"),
    (b"\x1f\x8b", "gzip 压缩包"),
)


class UploadRefused(DonorbotError):
    """Not something the importers could read at all (or no file): one clear line."""


@dataclass(frozen=True)
class Pending:
    """An upload waiting for confirmation."""

    token: str
    folder: Path
    kind: str
    file: str  # the file's name inside `folder`
    code: str
    user: str

    @property
    def path(self) -> Path:
        return self.folder / self.file


# ---- the upload form ---------------------------------------------------------------------


async def imports_home(request: web.Request) -> web.Response:
    _, code = await staff_for(request)
    return await _form_page(request, code)


async def _form_page(
    request: web.Request, code: str, *, error: str | None = None, status: int = 200
) -> web.Response:
    async with sessions(request)() as s:
        queued = await s.scalar(
            select(func.count()).where(
                Donation.jurisdiction == code,
                Donation.unit_id.is_(None),
                Donation.unit_raw_normalized.is_not(None),
            )
        )
    kind = request.query.get("kind", "plan")
    return page(
        request,
        "imports.html",
        status=status,
        kinds=KINDS,
        kind=kind if kind in KINDS else "plan",
        error=error,
        queued=queued or 0,
        place=settings(request).jurisdiction(code).name,
        max_mb=settings(request).console_max_upload_mb,
    )


# ---- preview (dry run) and confirmation ----------------------------------------------------


async def preview(request: web.Request) -> web.Response:
    try:
        return await _preview(request)
    finally:
        data = request.get(FORM)
        for value in data.values() if data is not None else ():
            if isinstance(value, web.FileField):  # aiohttp leaves the uploads' temp files open
                value.file.close()


async def _preview(request: web.Request) -> web.Response:
    staff, code = await staff_for(request)
    data = form(request)
    kind = str(data.get("kind", ""))
    try:
        if kind not in KINDS:
            raise UploadRefused("请选择导入类型：计划、献血记录或联络员名录。")
        pending = _save(data.get("file"), data.get("checks") if kind == "plan" else None)
    except UploadRefused as exc:
        return await _form_page(request, code, error=str(exc), status=400)
    pending = _note(pending, kind, code, staff)
    _prune()
    report, issues, total, problem = await _attempt(
        request, pending, dry_run=True, actor=audit_actor(staff)
    )
    if report is None:  # nothing to confirm: the file goes now
        shutil.rmtree(pending.folder, ignore_errors=True)
    return _report_page(
        request,
        pending,
        report,
        issues,
        total,
        problem,
        dry_run=True,
        status=200 if report is not None else 422,
    )


async def confirm(request: web.Request) -> web.Response:
    staff, code = await staff_for(request)
    pending = _claim(str(form(request).get("token", "")), code, staff)
    try:
        report, issues, total, problem = await _attempt(
            request, pending, dry_run=False, actor=audit_actor(staff)
        )
    finally:
        shutil.rmtree(pending.folder, ignore_errors=True)
    return _report_page(
        request,
        pending,
        report,
        issues,
        total,
        problem,
        dry_run=False,
        status=200 if report is not None else 422,
    )


async def cancel(request: web.Request) -> web.Response:
    staff, code = await staff_for(request)
    try:
        pending = _claim(str(form(request).get("token", "")), code, staff)
    except web.HTTPNotFound:
        pass
    else:
        shutil.rmtree(pending.folder, ignore_errors=True)
    raise web.HTTPSeeOther(f"/console/j/{code}/imports")


async def _attempt(
    request: web.Request, pending: Pending, *, dry_run: bool, actor: str
) -> tuple[Any, list[ImportIssue], int, str | None]:
    """(report, issues, total issues, other problem): the importer's verdict on the file.

    A dry run writes nothing (its audit entry is rolled back with the rest)."""
    scoped = _scoped(settings(request), pending.code)
    factory = sessions(request)
    try:
        if pending.kind == "plan":
            report: Any = await import_plan_file(
                factory, scoped, pending.path, dry_run=dry_run, actor=actor
            )
        elif pending.kind == "donations":
            report = await import_donation_file(
                factory,
                scoped,
                pending.path,
                dry_run=dry_run,
                actor=actor,
                clock=clock(request),
            )
        else:
            report = await import_liaison_file(
                factory, scoped, pending.path, dry_run=dry_run, actor=actor
            )
    except ImportFailed as exc:
        return None, exc.issues, exc.total, None
    except DonorbotError as exc:
        return None, [], 0, str(exc)
    except Exception:  # an untrusted file must never become a traceback on the page
        log.exception("console import of %s failed", pending.file)
        return None, [], 0, "读取文件时出错：文件可能已损坏，或不是 CSV/XLSX 表格。未导入任何数据。"
    return report, [], 0, None


def _scoped(base: Settings, code: str) -> Settings:
    """The account file as this page's importer sees it: this jurisdiction only."""
    return base.model_copy(update={"jurisdictions": {code: base.jurisdiction(code)}})


def _report_page(
    request: web.Request,
    pending: Pending,
    report: Any,
    issues: list[ImportIssue],
    total: int,
    problem: str | None,
    *,
    dry_run: bool,
    status: int,
) -> web.Response:
    extra: dict[str, Any] = {}
    if report is not None and pending.kind == "plan":
        units, missing = shortfall(report.checks)
        extra = {"counts": report.check_counts(), "short_units": units, "short_total": missing}
    code = pending.code
    return page(
        request,
        "imports_report.html",
        status=status,
        kind=pending.kind,
        kind_label=KINDS[pending.kind],
        file=pending.file,
        token=pending.token if dry_run and report is not None else None,
        dry_run=dry_run,
        report=report,
        issues=issues,
        total=total,
        problem=problem,
        kind_labels=KIND_LABELS,
        place=settings(request).jurisdiction(code).name,
        **extra,
    )


# ---- the pending upload on disk -----------------------------------------------------------


def _save(upload: Any, checks: Any) -> Pending:
    """Write the upload (and a plan's optional checks file) to a fresh private folder."""
    if not isinstance(upload, web.FileField) or not upload.filename:
        raise UploadRefused("请选择要上传的文件（CSV 或 .xlsx）。")
    name = _safe_name(upload.filename)
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in SUFFIXES:
        raise UploadRefused(
            f"「{name}」不是表格文件：只能上传 CSV（.csv/.txt）或 Excel 工作簿（.xlsx）。"
        )
    upload.file.seek(0)
    head = upload.file.read(SNIFF)
    _sniff(name, suffix, head)
    _private_root()
    token = secrets.token_urlsafe(24)
    folder = UPLOAD_ROOT / token
    folder.mkdir(mode=0o700)
    try:
        with (folder / name).open("xb") as out:
            out.write(head)
            shutil.copyfileobj(upload.file, out)
        if isinstance(checks, web.FileField) and checks.filename:
            if not checks.filename.lower().endswith(".json"):
                raise UploadRefused("核对文件应为 .checks.json（JSON）文件。")
            checks.file.seek(0)
            target = folder / f"{PurePosixPath(name).stem}.checks.json"
            with target.open("xb") as out:
                shutil.copyfileobj(checks.file, out)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Pending(token, folder, "", name, "", "")


def _private_root() -> None:
    """The upload folder exists, is ours and nobody else's (not a symlink planted in /tmp)."""
    UPLOAD_ROOT.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(UPLOAD_ROOT)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        log.error("upload folder %s is not private to this user; refusing uploads", UPLOAD_ROOT)
        raise UploadRefused("服务器的上传目录设置不安全，暂时无法上传：请联系管理员。")


def _note(pending: Pending, kind: str, code: str, staff: Staff) -> Pending:
    done = Pending(pending.token, pending.folder, kind, pending.file, code, staff.username)
    meta = {"kind": kind, "file": done.file, "code": code, "user": staff.username}
    (pending.folder / META).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    return done


def _safe_name(filename: str) -> str:
    """The uploaded file's own name (reports name it), without any path or control character."""
    base = PurePosixPath(filename.replace("\\", "/")).name
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C")
    base = base.strip().lstrip(".")
    path = PurePosixPath(base)
    stem, suffix = path.stem[:80], path.suffix[:8]
    if not stem:
        stem = "upload"
    return f"{stem}{suffix}"


def _sniff(name: str, suffix: str, head: bytes) -> None:
    """Refuse, with what it is, a file that is no spreadsheet at all (a picture, a program)."""
    if not head:
        raise UploadRefused(f"「{name}」是空文件。")
    if suffix in (".xlsx", ".xlsm"):
        if head.startswith(b"PK\x03\x04"):
            return
        if head.startswith(b"\xd0\xcf\x11\xe0"):
            raise UploadRefused(
                f"「{name}」其实是旧版 .xls 文件：请在 Excel 中另存为 .xlsx 或 CSV 后再上传。"
            )
        raise UploadRefused(f"「{name}」不是有效的 Excel 工作簿（.xlsx）：{_what(head)}")
    if suffix not in TEXT_SUFFIXES:
        return  # .xls: the reader says what to do
    if head.startswith(b"PK\x03\x04"):
        raise UploadRefused(
            f"「{name}」的内容是 Excel 工作簿或 ZIP 压缩包，不是 CSV："
            "如果是 Excel 文件，请把扩展名改为 .xlsx 后再上传。"
        )
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise UploadRefused(f"「{name}」不是表格：文件内容是{what}。请上传 CSV 或 .xlsx 文件。")
    utf16 = head.startswith((b"\xff\xfe", b"\xfe\xff"))
    if not utf16 and b"\x00" in head:
        raise UploadRefused(
            f"「{name}」不是文本表格：文件含有二进制内容。请上传 CSV 或 .xlsx 文件。"
        )


def _what(head: bytes) -> str:
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return f"文件内容是{what}。"
    return "文件内容不是 Excel 格式。"


def _claim(token: str, code: str, staff: Staff) -> Pending:
    """The pending upload of `token`, taken (renamed) so it is confirmed at most once."""
    gone = web.HTTPNotFound(
        text="这次上传已确认、已取消或已过期：请重新上传文件。", content_type="text/plain"
    )
    if not TOKEN.fullmatch(token):
        raise gone
    folder = UPLOAD_ROOT / token
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise gone from None
    kind, file = meta.get("kind"), meta.get("file")
    if meta.get("code") != code or meta.get("user") != staff.username:
        raise gone
    if kind not in KINDS or not isinstance(file, str) or PurePosixPath(file).name != file:
        raise gone
    taken = UPLOAD_ROOT / f"{token}.taken"
    try:
        folder.rename(taken)
    except OSError:
        raise gone from None
    return Pending(token, taken, kind, file, code, staff.username)


def _prune() -> None:
    """Remove uploads older than a day that nobody confirmed."""
    cutoff = time.time() - UPLOAD_TTL
    try:
        for folder in UPLOAD_ROOT.iterdir():
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
    except OSError:
        pass


# ---- the review queue: unit names that matched no unit ------------------------------------


async def unmatched(request: web.Request) -> web.Response:
    _, code = await staff_for(request)
    return await _queue_page(request, code)


async def _queue_page(
    request: web.Request,
    code: str,
    *,
    message: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    async with sessions(request)() as s:
        entries = await unmatched_queue(s, code)
    return page(
        request,
        "imports_unmatched.html",
        status=status,
        entries=entries,
        total=sum(e.rows for e in entries),
        message=message,
        error=error,
        place=settings(request).jurisdiction(code).name,
    )


async def add_alias(request: web.Request) -> web.Response:
    staff, code = await staff_for(request)
    data = form(request)
    alias = str(data.get("alias", "")).strip()
    unit = str(data.get("unit", "")).strip()
    if not alias or not unit or len(alias) > 255 or len(unit) > 255:
        return await _queue_page(
            request, code, error="请填写别名和它所指的单位（各不超过 255 个字符）。", status=400
        )
    try:
        async with sessions(request)() as s, s.begin():
            target, created, credited = await alias_and_credit(
                s, code, alias, unit, audit_actor(staff)
            )
    except ReviewError as exc:
        return await _queue_page(request, code, error=str(exc), status=422)
    what = "已添加别名" if created else "别名已存在"
    message = f"{what}「{alias}」→「{target.name}」；计入待核对的献血记录 {credited} 条。"
    return await _queue_page(request, code, message=message)


async def rematch_all(request: web.Request) -> web.Response:
    staff, code = await staff_for(request)
    async with sessions(request)() as s, s.begin():
        moved = await rematch(s, code, audit_actor(staff))
    total = sum(n for _, n in moved)
    message = f"已计入 {total} 条。" if moved else "没有可以确定匹配的记录。"
    return await _queue_page(request, code, message=message)


def register(app: web.Application) -> None:
    app.router.add_get("/j/{code}/imports", imports_home)
    app.router.add_post("/j/{code}/imports/preview", preview)
    app.router.add_post("/j/{code}/imports/confirm", confirm)
    app.router.add_post("/j/{code}/imports/cancel", cancel)
    app.router.add_get("/j/{code}/imports/unmatched", unmatched)
    app.router.add_post("/j/{code}/imports/unmatched/alias", add_alias)
    app.router.add_post("/j/{code}/imports/unmatched/rematch", rematch_all)
