  ;; Shared by the WAT test modules (tests/plugins/wasm/wat.py puts it after _imports.wat):
  ;; memory, a bump allocator, and small helpers. Scratch out-pointers: 16 (ptr) and 20 (size);
  ;; each module keeps its strings at 1024 and above.
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (func $alloc (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap
      (i32.and (i32.add (i32.add (global.get $heap) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (block $fits
      (br_if $fits (i32.le_u (global.get $heap) (i32.shl (memory.size) (i32.const 16))))
      (if (i32.eq (i32.const -1)
            (memory.grow (i32.add (i32.const 1)
              (i32.shr_u (i32.sub (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
                         (i32.const 16)))))
        (then (return (i32.const 0)))))
    (local.get $p))
  (func $hdr_add (param $map i32) (param $k i32) (param $kl i32) (param $v i32) (param $vl i32)
    (drop (call $proxy_add_header_map_value
      (local.get $map) (local.get $k) (local.get $kl) (local.get $v) (local.get $vl))))
  ;; true when the map has the key; its value is then at (i32.load 16), size (i32.load 20)
  (func $hdr_has (param $map i32) (param $k i32) (param $kl i32) (result i32)
    (i32.eqz (call $proxy_get_header_map_value
      (local.get $map) (local.get $k) (local.get $kl) (i32.const 16) (i32.const 20))))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
