"""The sync protocol (SPEC section 3): wire Structs, HLC, merge, push, pull, the op registry and
the reference device client."""
