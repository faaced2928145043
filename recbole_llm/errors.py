"""Errors a user can cause, each with one message that names the problem and the fix.

The runner prints these as one paragraph instead of a traceback; everything else is a bug and
keeps its traceback.
"""


class RecBoleLLMError(Exception):
    """Base class: a problem in the user's input (config, data, model name, checkpoint path)."""


class UnknownModelError(RecBoleLLMError):
    """The model name is neither a plugin model nor a RecBole model."""


class DatasetNotFoundError(RecBoleLLMError):
    """The dataset's atomic files are not where RecBole would look for them."""


class MissingTextFieldError(RecBoleLLMError):
    """A field named in ``item_text_fields`` is not in the dataset's ``.item`` file."""


class LLMLoadError(RecBoleLLMError):
    """``llm_path`` does not name a loadable language model."""


class ConfigValueError(RecBoleLLMError):
    """A config key holds a value the plugin cannot use."""


class SavedModelError(RecBoleLLMError):
    """A saved model file is missing, unreadable or does not fit the dataset it names."""


class UnknownUserError(RecBoleLLMError):
    """A user token asked for is not in the dataset."""


class CheckpointError(RecBoleLLMError):
    """A checkpoint, cache or result file cannot be read, or its folder cannot be written."""


class DatasetFormatError(RecBoleLLMError):
    """The dataset's files are there but cannot be used as they are."""


class UnknownKeyWarning(UserWarning):
    """A config key that neither RecBole nor the plugin reads (a typo, most often): it changes nothing."""
