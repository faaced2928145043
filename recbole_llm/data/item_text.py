"""Item descriptions: the ``.item`` file's text fields as one string per internal item id.

The text is read from the atomic ``.item`` file itself rather than from RecBole's loaded item
features, for two reasons: stock models then load exactly what stock RecBole loads (the text
columns never enter their data), and titles keep their spelling (RecBole would split a
``token_seq`` title into remapped word tokens).

Config keys (set per dataset in ``recbole_llm/properties/dataset/<dataset>.yaml``):

- ``item_text_fields``: the ``.item`` columns that describe an item, e.g. ``[movie_title, genre]``.
- ``item_text_template``: optional ``str.format`` template over those fields, e.g.
  ``"{movie_title}, genres: {genre}"``; without one the fields are joined as ``field: value; ...``.
- ``item_text_file``: optional CSV with more text per item, e.g. ml-1m's TMDB overviews
  (``ml-1m.item_text_tmdb.csv``), in the dataset's folder unless the path is absolute. Its first
  column holds the ``.item`` file's item ids; ``item_text_fields`` may name its other columns
  (where a name is in both files, the ``.item`` file's column is read). Items it does not list
  read its columns as empty; ``|`` separates the values of a column (``Tom Hanks|Tim Allen``).

Underscores are read as spaces: the shared datasets join multi-word categories with ``_``.
"""

import csv
import string
import sys
import warnings
from pathlib import Path

from recbole_llm.errors import ConfigValueError, MissingTextFieldError
from recbole_llm.helpers import option


def _item_file(config):
    return Path(config["data_path"]) / f"{config['dataset']}.item"


def _side_file(config):
    """``item_text_file`` as a path (relative ones from the dataset's folder), or None when unset."""
    name = option(config, "item_text_file", None)
    if name is not None and not isinstance(name, str):
        raise ConfigValueError(f"item_text_file={name!r} is not a file name. Fix: pass --item_text_file=<a CSV in the "
                               "dataset's folder, e.g. ml-1m.item_text_tmdb.csv>, or leave it out.")
    return None if name is None else Path(config["data_path"]) / Path(name).expanduser()


def _side_header(path):
    if not path.is_file():
        raise MissingTextFieldError(
            f"item_text_file names {path.resolve()}, which does not exist. Fix: name a CSV in the dataset's folder "
            f"({path.parent.resolve()}) whose first column holds the item ids, or unset item_text_file (--item_text_file=~)."
        )
    with open(path, encoding="utf-8", newline="") as f:
        header = next(csv.reader(f), [])
    if len(header) < 2:
        raise MissingTextFieldError(
            f"item_text_file {path.name} has {len(header)} column(s); it needs the item ids first and text columns "
            "after them. Fix: write a header line such as 'item_id,overview' and one row per item."
        )
    return header


def _side_texts(path, fields):
    """{item token: {field: text}} of the ``fields`` (columns of ``path``) for every row of ``item_text_file``."""
    limit = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)  # csv refuses fields over 128 KB by default; a long overview may reach it
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = csv.reader(f)
            header = next(rows)
            wanted = [header.index(field) for field in fields]
            return {row[0].strip(): {field: row[i].replace("|", ", ").strip() if i < len(row) else ""
                                     for field, i in zip(fields, wanted)}
                    for row in rows if row}
    finally:
        csv.field_size_limit(limit)


def _read_header(path, separator):
    with open(path, encoding="utf-8") as f:
        return [cell.split(":")[0] for cell in f.readline().rstrip("\n").split(separator)]


def item_columns(config):
    """The column names of the dataset's ``.item`` file."""
    return _read_header(_item_file(config), config["field_separator"])


def check_item_text_fields(config):
    """Raise a clear error unless every ``item_text_fields`` column is in the ``.item`` file."""
    fields = config["item_text_fields"]
    if not fields:
        raise ConfigValueError(
            f"Model {config['model']} reads item descriptions, but item_text_fields is not set for "
            f"dataset '{config['dataset']}'. Fix: set item_text_fields (the .item columns that describe "
            "an item) in your dataset property file, e.g. item_text_fields: [title, categories]."
        )
    path = _item_file(config)
    if not path.is_file():
        raise MissingTextFieldError(
            f"Model {config['model']} reads item descriptions from {path.resolve()}, which does not exist. "
            "Fix: add a .item file with the text columns, or choose a model that needs no item text."
        )
    columns = _read_header(path, config["field_separator"])
    side = _side_file(config)
    side_columns = _side_header(side)[1:] if side else []
    missing = [config["ITEM_ID_FIELD"]] * (config["ITEM_ID_FIELD"] not in columns)
    missing += [f for f in fields if f not in columns and f not in side_columns]
    if missing:
        more = f" nor {side.name} (columns {side_columns})" if side else ""
        raise MissingTextFieldError(
            f"item_text_fields (and ITEM_ID_FIELD) name {missing}, but {path.name} has only the columns {columns}{more}. "
            f"Fix: set item_text_fields to columns of {path.name}, e.g. --item_text_fields=\"{columns[1:3]}\", "
            f"and name its id column {config['ITEM_ID_FIELD']}."
        )
    template = config["item_text_template"]
    if template:
        try:
            unknown = {name for _, name, _, _ in string.Formatter().parse(template) if name} - set(fields)
            if not unknown:
                template.format(**dict.fromkeys(fields, ""))
        except (ValueError, IndexError, AttributeError) as error:  # "{title", "{}", "{title.x}", "{title:d}"
            raise ConfigValueError(
                f"item_text_template {template!r} is not a usable format string ({type(error).__name__}: {error}). "
                f"Fix: write each field by name, e.g. '{{{fields[0]}}}', and a literal brace twice ('{{{{' or '}}}}')."
            ) from None
        if unknown:
            raise ConfigValueError(
                f"item_text_template {template!r} uses {sorted(unknown)}, which are not in item_text_fields "
                f"{list(fields)}. Fix: add them to item_text_fields or remove them from the template."
            )
    return columns


def item_descriptions(dataset, all_columns=False):
    """One description per internal item id of ``dataset`` (index 0, RecBole's padding id, is ``""``).

    Items the ``.item`` file does not list get ``""``; rows for items the dataset filtered out are
    skipped. ``all_columns`` describes items by every column of the ``.item`` file but the id, for
    datasets that name no ``item_text_fields``.
    """
    config = dataset.config
    if all_columns:
        columns = _read_header(_item_file(config), config["field_separator"])
        fields, template = [c for c in columns if c != dataset.iid_field], None
    else:
        columns = check_item_text_fields(config)
        fields, template = config["item_text_fields"], config["item_text_template"]
    token2id = dataset.field2token_id[dataset.iid_field]
    id_column = columns.index(dataset.iid_field)
    wanted = {f: columns.index(f) for f in fields if f in columns}
    side = _side_file(config)
    from_side = [f for f in fields if f not in wanted]
    side_texts = _side_texts(side, from_side) if side and from_side else {}
    side_empty = dict.fromkeys(from_side, "")

    descriptions = [""] * dataset.item_num
    # Split by hand rather than with the csv module: the files have no quoting, and csv refuses any field
    # over 128 KB (csv.field_size_limit), a length a long item description can reach.
    with open(_item_file(config), encoding="utf-8", newline="") as f:
        next(f)
        for line in f:
            row = line.rstrip("\r\n").split(config["field_separator"])
            item_id = token2id.get(row[id_column])
            if item_id is None:
                continue
            values = {field: row[i].replace("_", " ").strip() if i < len(row) else "" for field, i in wanted.items()}
            values.update(side_texts.get(row[id_column], side_empty))
            values = {field: values[field] for field in fields}
            if template:
                descriptions[item_id] = template.format(**values)
            else:
                descriptions[item_id] = "; ".join(f"{k}: {v}" for k, v in values.items() if v)
    if not all_columns:  # a listing for people (--recommend) may be empty; a model's input may not
        check_descriptions(descriptions[1:], config)
    return descriptions


def check_descriptions(descriptions, config):
    """Refuse a dataset whose item texts are all empty (the language model would read nothing about
    any item); warn when more than half are."""
    empty = sum(not d.strip() for d in descriptions)
    where = f"item_text_fields {list(config['item_text_fields'])} of {_item_file(config)}"
    if descriptions and empty == len(descriptions):
        raise MissingTextFieldError(
            f"All {empty} items have an empty text in {where}. Fix: fill those columns, or name columns that "
            f"hold text with --item_text_fields=\"['title']\"."
        )
    if empty * 2 > len(descriptions):
        warnings.warn(f"{empty} of {len(descriptions)} items have an empty text in {where}; the language model "
                      "reads nothing about them.", UserWarning, stacklevel=3)
