"""A cap on how many fields a GraphQL document can resolve, checked before it runs.

Depth and alias limits alone still let ``posts(limit: 100) { comments { author { posts {
comments { id } } } } }`` through: five levels, no alias, and about 250,000 resolved fields,
seconds of work for one request. This rule multiplies, along every path of the document, each
list field's size (its ``limit`` argument, or that argument's default; a variable counts as
the largest ``limit`` allowed) and refuses a document whose total is over the budget.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLObjectType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    get_named_type,
    get_nullable_type,
    is_list_type,
)
from strawberry.extensions import AddValidationRules


def max_resolved_fields(budget: int, *, largest_limit: int) -> AddValidationRules:
    """A Strawberry extension that refuses documents resolving more than ``budget`` fields."""

    class MaxResolvedFields(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            root = self.context.schema.get_root_type(node.operation)
            if root is None:
                return
            total = self._cost(node.selection_set, root, 1, frozenset())
            if total > budget:
                self.report_error(
                    GraphQLError(
                        f"the query would resolve about {total:,} fields, more than the "
                        f"{budget:,} allowed: ask for fewer items (limit) or fewer levels",
                        node,
                    )
                )

        def _cost(
            self,
            selection_set: SelectionSetNode,
            parent: GraphQLObjectType,
            times: int,
            fragments: frozenset[str],
        ) -> int:
            total = 0
            for selection in selection_set.selections:
                if isinstance(selection, FieldNode):
                    field = parent.fields.get(selection.name.value)
                    if field is None:  # __typename, or an unknown field another rule reports
                        total += times
                        continue
                    total += times
                    child = get_named_type(field.type)
                    if selection.selection_set is not None and isinstance(child, GraphQLObjectType):
                        size = (
                            self._list_size(selection, field)
                            if is_list_type(get_nullable_type(field.type))
                            else 1
                        )
                        total += self._cost(selection.selection_set, child, times * size, fragments)
                elif isinstance(selection, InlineFragmentNode):
                    total += self._cost(selection.selection_set, parent, times, fragments)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    fragment = self.context.get_fragment(name)
                    if fragment is not None and name not in fragments:  # cycles: another rule
                        total += self._cost(
                            fragment.selection_set, parent, times, fragments | {name}
                        )
                if total > budget:
                    break  # over already: no need to walk the rest of a huge document
            return total

        def _list_size(self, node: FieldNode, field: Any) -> int:
            for argument in node.arguments or ():
                if argument.name.value == "limit":
                    if isinstance(argument.value, IntValueNode):
                        return max(int(argument.value.value), 0)
                    return largest_limit  # a variable: the worst it can be
            limit = field.args.get("limit")
            if limit is not None and isinstance(limit.default_value, int):
                return limit.default_value
            return largest_limit

    return AddValidationRules([MaxResolvedFields])
