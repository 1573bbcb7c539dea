from marshmallow import Schema, fields


class ProcessVersionOut(Schema):
    process_id = fields.Str()
    version = fields.Int()
    name = fields.Str()
    content_hash = fields.Str()
    roles = fields.List(fields.Str())
    deployed_at = fields.DateTime()
    deployed_by = fields.Str(allow_none=True)
    note = fields.Str(allow_none=True)
    files = fields.Method("_files")

    def _files(self, version):
        return [{"filename": f.filename, "sha256": f.sha256} for f in version.files]


class ProcessListOut(Schema):
    items = fields.List(fields.Nested(ProcessVersionOut))


class DeployOut(Schema):
    deployed = fields.List(fields.Nested(ProcessVersionOut), metadata={"description": "new versions"})
    unchanged = fields.List(fields.Nested(ProcessVersionOut), metadata={"description": "processes whose content was already deployed"})
