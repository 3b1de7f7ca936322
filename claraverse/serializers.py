"""Serializer bases shared by every app."""

from rest_framework import serializers


class StrictInputSerializer(serializers.Serializer):
    """An input serializer that refuses fields it does not know.

    Silently ignoring a misspelt or read-only field would let a client believe a change was
    made; a 400 naming the field is clearer.
    """

    unknown_field_message = "Unknown or read-only field."

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: [self.unknown_field_message] for name in unknown})
        return super().to_internal_value(data)


class JsonObjectField(serializers.JSONField):
    """A JSON object (dict) with a cap on its encoded size."""

    default_error_messages = {
        "not_object": "Must be a JSON object.",
        "too_large": "Must encode to at most {max_bytes} bytes of JSON.",
    }

    def __init__(self, *, max_bytes: int = 64 * 1024, **kwargs):
        self.max_bytes = max_bytes
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        import json

        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_object")
        if len(json.dumps(value)) > self.max_bytes:
            self.fail("too_large", max_bytes=self.max_bytes)
        return value


class _StringsOnly:
    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise serializers.ValidationError("Not a valid string.", code="invalid")
        return super().to_internal_value(data)


class StrictCharField(_StringsOnly, serializers.CharField):
    """A string field that takes only JSON strings; DRF's CharField turns numbers into text."""


class StrictRegexField(_StringsOnly, serializers.RegexField):
    """A RegexField that takes only JSON strings (`123` is not the id "123")."""


class StrictBooleanField(serializers.BooleanField):
    """Only JSON `true`/`false`; DRF's BooleanField also takes "yes", "off", 1, 0 and the like."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictFloatField(serializers.FloatField):
    """Only JSON numbers; DRF's FloatField also takes numeric strings and booleans."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


def validated(serializer_class: type[serializers.Serializer], data, **context) -> dict:
    """Validate request data with an input serializer; a failure raises the 400 envelope."""
    serializer = serializer_class(data=data, context=context)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
