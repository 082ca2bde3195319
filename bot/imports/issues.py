"""Import errors: every problem with its file, row (as Excel shows it) and column, all at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.errors import DonorbotError

MAX_LISTED = 1000  # a broken million-row file lists its first thousand problems and counts the rest


@dataclass(frozen=True)
class ImportIssue:
    file: str
    row: int | None  # header = row 1, as the office sees it in Excel
    column: str | None  # the column as the file names it (「月份」 or `months`)
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f" 第{self.row}行"
        if self.column:
            where += f"「{self.column}」列"
        return f"{where}：{self.message}"


@dataclass
class IssueList:
    """Collects problems; `raise_if_any` turns them into one ImportFailed after the whole file."""

    items: list[ImportIssue] = field(default_factory=list)
    total: int = 0

    def add(self, file: str, row: int | None, column: str | None, message: str) -> None:
        self.total += 1
        if len(self.items) < MAX_LISTED:
            self.items.append(ImportIssue(file, row, column, message))

    def __bool__(self) -> bool:
        return self.total > 0

    def raise_if_any(self) -> None:
        if self.total:
            raise ImportFailed(self.items, self.total)


class ImportFailed(DonorbotError):
    """The file has errors; nothing was imported. `issues` lists them (up to MAX_LISTED)."""

    def __init__(self, issues: list[ImportIssue], total: int | None = None) -> None:
        self.issues = issues
        self.total = total if total is not None else len(issues)
        super().__init__(self.summary())

    def summary(self) -> str:
        lines = [f"发现 {self.total} 个错误，未导入任何数据："]
        lines += [f"  {issue}" for issue in self.issues]
        if self.total > len(self.issues):
            lines.append(f"  ……另有 {self.total - len(self.issues)} 个错误未列出")
        return "\n".join(lines)
