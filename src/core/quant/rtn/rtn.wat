;; The WebAssembly SIMD engine of round-to-nearest quantization (simdEngine.ts drives it; rtn/index.ts says
;; what upstream computes). Integer schemes, channel / group / tensor strategy, BF16 or F32 arithmetic.
;;
;; It computes exactly what the JS reference (jsEngine.ts) computes: every step is an IEEE operation with the
;; same rounding, in the same order as torch's ops:
;;   range per group (amax, or min & max) → calculate_qparams in float32, rounded to bf16 after each op
;;   → v = x / s as the float32 quotient (f32x4.div) → bf16 → (+ zp → bf16) → round half to even → clamp
;;   → int8; and for 4 / 8 bits the compressed-tensors packing.
;; Tests run every scheme through both engines and an independent float64 reference.
;;
;; Memory: one imported memory (env.mem), sized by the caller, which makes a new instance rather than grow it
;; (growing detaches the buffer; see instantiateWithMemory in src/core/util/wasm.ts). Pointers are byte offsets in it.
;; Every group length `gs` is a multiple of 16 floats (64 bytes): the loops handle 16 elements per iteration.
(module
  (import "env" "mem" (memory 1))
  (export "mem" (memory 0))

  ;; -------------------------------------------------------------------------------------------------------
  ;; Range of each group. The accumulators start at 0 because upstream widens the range to include 0.
  ;; f32x4.pmax / pmin (b < a ? b : a) never let a NaN in, so NaN is tracked separately (x != x) and
  ;; returned: the caller turns it into an error naming the row.
  ;; -------------------------------------------------------------------------------------------------------

  ;; dstA[g] = max |x| over group g of `groups` consecutive groups of `gs` floats from src.
  ;; Returns 1 if some x is NaN.
  (func (export "amax") (param $src i32) (param $groups i32) (param $gs i32) (param $dstA i32) (param $dstB i32) (result i32)
    (local $g i32) (local $end i32) (local $acc v128) (local $unused v128) (local $x v128) (local $nan v128)
    v128.const i32x4 0 0 0 0
    local.set $nan
    i32.const 0
    local.set $g
    block $done
      loop $group
        local.get $g  local.get $groups  i32.ge_u  br_if $done
        v128.const i32x4 0 0 0 0  local.set $acc
        v128.const i32x4 0 0 0 0  local.set $unused
        ;; end = src + 4·gs
        local.get $src  local.get $gs  i32.const 2  i32.shl  i32.add  local.set $end
        block $groupDone
          loop $sixteen
            local.get $src  local.get $end  i32.ge_u  br_if $groupDone
            ;; four vectors of four, unrolled
            local.get $src  v128.load offset=0   local.set $x
            local.get $nan  local.get $x  local.get $x  f32x4.ne  v128.or  local.set $nan
            local.get $acc  local.get $x  f32x4.abs  f32x4.pmax  local.set $acc
            local.get $src  v128.load offset=16  local.set $x
            local.get $nan  local.get $x  local.get $x  f32x4.ne  v128.or  local.set $nan
            local.get $acc  local.get $x  f32x4.abs  f32x4.pmax  local.set $acc
            local.get $src  v128.load offset=32  local.set $x
            local.get $nan  local.get $x  local.get $x  f32x4.ne  v128.or  local.set $nan
            local.get $acc  local.get $x  f32x4.abs  f32x4.pmax  local.set $acc
            local.get $src  v128.load offset=48  local.set $x
            local.get $nan  local.get $x  local.get $x  f32x4.ne  v128.or  local.set $nan
            local.get $acc  local.get $x  f32x4.abs  f32x4.pmax  local.set $acc
            local.get $src  i32.const 64  i32.add  local.set $src
            br $sixteen
          end
        end
        ;; dstA[g] = the largest of the four lanes
        local.get $dstA  local.get $g  i32.const 2  i32.shl  i32.add
        local.get $acc  f32x4.extract_lane 0  local.get $acc  f32x4.extract_lane 1  f32.max
        local.get $acc  f32x4.extract_lane 2  f32.max  local.get $acc  f32x4.extract_lane 3  f32.max
        f32.store
        local.get $g  i32.const 1  i32.add  local.set $g
        br $group
      end
    end
    local.get $nan
    v128.any_true)

  ;; dstA[g] = min, dstB[g] = max over group g (both including 0). Returns 1 if some x is NaN.
  (func (export "minmax") (param $src i32) (param $groups i32) (param $gs i32) (param $dstA i32) (param $dstB i32) (result i32)
    (local $g i32) (local $end i32) (local $min v128) (local $max v128) (local $x v128) (local $nan v128)
    v128.const i32x4 0 0 0 0
    local.set $nan
    i32.const 0
    local.set $g
    block $done
      loop $group
        local.get $g  local.get $groups  i32.ge_u  br_if $done
        v128.const i32x4 0 0 0 0  local.set $min
        v128.const i32x4 0 0 0 0  local.set $max
        local.get $src  local.get $gs  i32.const 2  i32.shl  i32.add  local.set $end
        block $groupDone
          loop $sixteen
            local.get $src  local.get $end  i32.ge_u  br_if $groupDone
            local.get $src  v128.load offset=0   local.set $x
            local.get $nan  local.get $x  local.get $x  f32x4.ne  v128.or  local.set $nan
            local.get $min  local.get $x  f32x4.pmin  local.set $min
            local.get $max  local.get $x  f32x4.pmax  local.set $max
            local.get $src  v128.load offset=16  local.set $x
            local.get $nan  local.get $x  local.get $x  f32x4.ne  v128.or  local.set $nan
            local.get $min  local.get $x  f32x4.pmin  local.set $min
            local.get $max  local.get $x  f32x4.pmax  local.set $max
            local.get $src  v128.load offset=32  local.set $x
            local.get $nan  local.get $x  local.get $x  f32x4.ne  v128.or  local.set $nan
            local.get $min  local.get $x  f32x4.pmin  local.set $min
            local.get $max  local.get $x  f32x4.pmax  local.set $max
            local.get $src  v128.load offset=48  local.set $x
            local.get $nan  local.get $x  local.get $x  f32x4.ne  v128.or  local.set $nan
            local.get $min  local.get $x  f32x4.pmin  local.set $min
            local.get $max  local.get $x  f32x4.pmax  local.set $max
            local.get $src  i32.const 64  i32.add  local.set $src
            br $sixteen
          end
        end
        local.get $dstA  local.get $g  i32.const 2  i32.shl  i32.add
        local.get $min  f32x4.extract_lane 0  local.get $min  f32x4.extract_lane 1  f32.min
        local.get $min  f32x4.extract_lane 2  f32.min  local.get $min  f32x4.extract_lane 3  f32.min
        f32.store
        local.get $dstB  local.get $g  i32.const 2  i32.shl  i32.add
        local.get $max  f32x4.extract_lane 0  local.get $max  f32x4.extract_lane 1  f32.max
        local.get $max  f32x4.extract_lane 2  f32.max  local.get $max  f32x4.extract_lane 3  f32.max
        f32.store
        local.get $g  i32.const 1  i32.add  local.set $g
        br $group
      end
    end
    local.get $nan
    v128.any_true)

  ;; -------------------------------------------------------------------------------------------------------
  ;; calculate_qparams for `groups` cells: outScale[g] = the stored scale, outZp[g] = the zero point as a
  ;; float (asymmetric only). Every op is float32 and, when $bf16 is set, rounded to bf16 right after, as
  ;; torch does for a bf16 tensor. bf16 rounding is integer round-to-nearest-even on the float32 bits:
  ;;   bits + 0x7fff + (bit 16 of bits), low 16 bits cleared
  ;; (exact for every finite float32, carries into the exponent and overflow to Inf included).
  ;; The division by the Python float (q_max − q_min)/2 or q_max − q_min is a true f32.div on CPU; on CUDA
  ;; ATen multiplies by its float32 reciprocal ($cuda = 1), which can change the last bit.
  ;; -------------------------------------------------------------------------------------------------------

  ;; Symmetric: s = R(amax / ((qmax − qmin) / 2)); zero → eps. aPtr = amax per cell.
  (func (export "qpSym")
    (param $aPtr i32) (param $bPtr i32) (param $groups i32) (param $div f32) (param $qmin f32) (param $qmax f32)
    (param $cuda i32) (param $bf16 i32) (param $eps f32) (param $outScale i32) (param $outZp i32)
    (local $g i32) (local $recip f32) (local $s f32) (local $t f32) (local $z f32) (local $u i32)
    ;; the float32 reciprocal CUDA multiplies by
    f32.const 1  local.get $div  f32.div  local.set $recip
    i32.const 0  local.set $g
    block $done
      loop $cell
        local.get $g  local.get $groups  i32.ge_u  br_if $done
        ;; t = amax; cuda ? t·recip : t / div
        local.get $aPtr  local.get $g  i32.const 2  i32.shl  i32.add  f32.load
        local.tee $t  local.get $recip  f32.mul
        local.get $t  local.get $div  f32.div
        local.get $cuda  select
        ;; R(): bf16 rounding of the value on the stack when $bf16 (select keeps the f32 value otherwise)
        local.tee $t  i32.reinterpret_f32  local.set $u
        local.get $u  i32.const 0x7fff  i32.add  local.get $u  i32.const 16  i32.shr_u  i32.const 1  i32.and  i32.add
        i32.const 0xffff0000  i32.and  f32.reinterpret_i32
        local.get $t  local.get $bf16  select
        local.set $s
        ;; a zero scale becomes eps
        local.get $eps  local.get $s  local.get $s  f32.const 0  f32.eq  select  local.set $s
        local.get $outScale  local.get $g  i32.const 2  i32.shl  i32.add  local.get $s  f32.store
        local.get $g  i32.const 1  i32.add  local.set $g
        br $cell
      end
    end)

  ;; Asymmetric: aPtr = min, bPtr = max per cell.
  ;;   d = R(max − min); s = R(d / (qmax − qmin)); t = R(min / s); z = R(qmin − t); z = clamp(z, qmin, qmax);
  ;;   NaN (an all-zero cell: 0 / 0) → 0; z = nearest(z) (round half to even, as torch.round into int8);
  ;;   then a zero scale becomes eps (after the zero point was computed, as upstream).
  (func (export "qpAsym")
    (param $aPtr i32) (param $bPtr i32) (param $groups i32) (param $div f32) (param $qmin f32) (param $qmax f32)
    (param $cuda i32) (param $bf16 i32) (param $eps f32) (param $outScale i32) (param $outZp i32)
    (local $g i32) (local $recip f32) (local $s f32) (local $t f32) (local $z f32) (local $u i32)
    f32.const 1  local.get $div  f32.div  local.set $recip
    i32.const 0  local.set $g
    block $done
      loop $cell
        local.get $g  local.get $groups  i32.ge_u  br_if $done
        ;; d = R(max − min)
        local.get $bPtr  local.get $g  i32.const 2  i32.shl  i32.add  f32.load
        local.get $aPtr  local.get $g  i32.const 2  i32.shl  i32.add  f32.load
        f32.sub
        local.tee $t  i32.reinterpret_f32  local.set $u
        local.get $u  i32.const 0x7fff  i32.add  local.get $u  i32.const 16  i32.shr_u  i32.const 1  i32.and  i32.add
        i32.const 0xffff0000  i32.and  f32.reinterpret_i32
        local.get $t  local.get $bf16  select
        ;; s = R(cuda ? d·recip : d / div)
        local.tee $t  local.get $recip  f32.mul
        local.get $t  local.get $div  f32.div
        local.get $cuda  select
        local.tee $t  i32.reinterpret_f32  local.set $u
        local.get $u  i32.const 0x7fff  i32.add  local.get $u  i32.const 16  i32.shr_u  i32.const 1  i32.and  i32.add
        i32.const 0xffff0000  i32.and  f32.reinterpret_i32
        local.get $t  local.get $bf16  select
        local.set $s
        ;; z = R(qmin − R(min / s)): a true division here (a tensor by a tensor, on any device)
        local.get $qmin
        local.get $aPtr  local.get $g  i32.const 2  i32.shl  i32.add  f32.load
        local.get $s  f32.div
        local.tee $t  i32.reinterpret_f32  local.set $u
        local.get $u  i32.const 0x7fff  i32.add  local.get $u  i32.const 16  i32.shr_u  i32.const 1  i32.and  i32.add
        i32.const 0xffff0000  i32.and  f32.reinterpret_i32
        local.get $t  local.get $bf16  select
        f32.sub
        local.tee $t  i32.reinterpret_f32  local.set $u
        local.get $u  i32.const 0x7fff  i32.add  local.get $u  i32.const 16  i32.shr_u  i32.const 1  i32.and  i32.add
        i32.const 0xffff0000  i32.and  f32.reinterpret_i32
        local.get $t  local.get $bf16  select
        ;; clamp to [qmin, qmax]
        local.get $qmax  f32.min  local.get $qmin  f32.max  local.set $z
        ;; NaN → 0 (upstream's 0/0 zero point is platform-defined), then round half to even
        f32.const 0  local.get $z  local.get $z  local.get $z  f32.ne  select  f32.nearest  local.set $z
        local.get $outZp  local.get $g  i32.const 2  i32.shl  i32.add  local.get $z  f32.store
        local.get $eps  local.get $s  local.get $s  f32.const 0  f32.eq  select  local.set $s
        local.get $outScale  local.get $g  i32.const 2  i32.shl  i32.add  local.get $s  f32.store
        local.get $g  i32.const 1  i32.add  local.set $g
        br $cell
      end
    end)

  ;; -------------------------------------------------------------------------------------------------------
  ;; Quantization: dst[i] = clamp(round_half_even(v), qmin, qmax) as int8, 16 elements per iteration, for
  ;; `groups` consecutive groups of `gs` floats, each with its scale (scalePtr[g]) and zero point (zpPtr[g]).
  ;;   v = x / s        f32x4.div: the correctly rounded float32 quotient, which is torch's `x / scale` (a
  ;;                    float32 op). (A multiply by fround(1/s) with a check for quotients near rounding
  ;;                    boundaries was tried: exact, but slower under V8.)
  ;;   v = bf16(v)      BF16 arithmetic only: torch rounds the quotient to the tensor dtype
  ;;   v = bf16(v + zp) asymmetric only
  ;;   round            add 1.5·2^23 (the magic number's float; the sum's low mantissa bits are then the
  ;;                    integer, rounded half to even by the float add: exact for |v| < 2^22, and |v| is at
  ;;                    most a few hundred here), then subtract its bit pattern as an integer → i32
  ;;   narrow           i32 → i16 → i8 with signed saturation, then clamp to [qmin, qmax] in int8
  ;; params: src, groups, gs, scalePtr, zpPtr, qmin (i32), qmax (i32), dst.
  ;; -------------------------------------------------------------------------------------------------------

  ;; Float32 arithmetic, no zero point.
  (func (export "quantF32")
    (param $src i32) (param $groups i32) (param $gs i32) (param $scalePtr i32) (param $zpPtr i32)
    (param $qmin i32) (param $qmax i32) (param $dst i32)
    (local $g i32) (local $end i32) (local $s v128) (local $zp v128) (local $qminv v128) (local $qmaxv v128)
    (local $t v128) (local $magic v128)
    v128.const i32x4 0x4b400000 0x4b400000 0x4b400000 0x4b400000  local.set $magic  ;; 1.5·2^23
    local.get $qmin  i8x16.splat  local.set $qminv
    local.get $qmax  i8x16.splat  local.set $qmaxv
    i32.const 0  local.set $g
    block $done
      loop $group
        local.get $g  local.get $groups  i32.ge_u  br_if $done
        local.get $scalePtr  local.get $g  i32.const 2  i32.shl  i32.add  f32.load  f32x4.splat  local.set $s
        local.get $src  local.get $gs  i32.const 2  i32.shl  i32.add  local.set $end
        block $groupDone
          loop $sixteen
            local.get $src  local.get $end  i32.ge_u  br_if $groupDone
            local.get $dst
            local.get $src  v128.load offset=0   local.get $s  f32x4.div
            local.get $magic  f32x4.add  local.get $magic  i32x4.sub
            local.get $src  v128.load offset=16  local.get $s  f32x4.div
            local.get $magic  f32x4.add  local.get $magic  i32x4.sub
            i16x8.narrow_i32x4_s
            local.get $src  v128.load offset=32  local.get $s  f32x4.div
            local.get $magic  f32x4.add  local.get $magic  i32x4.sub
            local.get $src  v128.load offset=48  local.get $s  f32x4.div
            local.get $magic  f32x4.add  local.get $magic  i32x4.sub
            i16x8.narrow_i32x4_s
            i8x16.narrow_i16x8_s  local.get $qminv  i8x16.max_s  local.get $qmaxv  i8x16.min_s
            v128.store
            local.get $src  i32.const 64  i32.add  local.set $src
            local.get $dst  i32.const 16  i32.add  local.set $dst
            br $sixteen
          end
        end
        local.get $g  i32.const 1  i32.add  local.set $g
        br $group
      end
    end)

  ;; Float32 arithmetic with a zero point: v = fround(x / s) + zp (a float32 add).
  (func (export "quantF32Zp")
    (param $src i32) (param $groups i32) (param $gs i32) (param $scalePtr i32) (param $zpPtr i32)
    (param $qmin i32) (param $qmax i32) (param $dst i32)
    (local $g i32) (local $end i32) (local $s v128) (local $zp v128) (local $qminv v128) (local $qmaxv v128)
    (local $t v128) (local $magic v128)
    v128.const i32x4 0x4b400000 0x4b400000 0x4b400000 0x4b400000  local.set $magic
    local.get $qmin  i8x16.splat  local.set $qminv
    local.get $qmax  i8x16.splat  local.set $qmaxv
    i32.const 0  local.set $g
    block $done
      loop $group
        local.get $g  local.get $groups  i32.ge_u  br_if $done
        local.get $scalePtr  local.get $g  i32.const 2  i32.shl  i32.add  f32.load  f32x4.splat  local.set $s
        local.get $zpPtr  local.get $g  i32.const 2  i32.shl  i32.add  f32.load  f32x4.splat  local.set $zp
        local.get $src  local.get $gs  i32.const 2  i32.shl  i32.add  local.set $end
        block $groupDone
          loop $sixteen
            local.get $src  local.get $end  i32.ge_u  br_if $groupDone
            local.get $dst
            local.get $src  v128.load offset=0   local.get $s  f32x4.div  local.get $zp  f32x4.add
            local.get $magic  f32x4.add  local.get $magic  i32x4.sub
            local.get $src  v128.load offset=16  local.get $s  f32x4.div  local.get $zp  f32x4.add
            local.get $magic  f32x4.add  local.get $magic  i32x4.sub
            i16x8.narrow_i32x4_s
            local.get $src  v128.load offset=32  local.get $s  f32x4.div  local.get $zp  f32x4.add
            local.get $magic  f32x4.add  local.get $magic  i32x4.sub
            local.get $src  v128.load offset=48  local.get $s  f32x4.div  local.get $zp  f32x4.add
            local.get $magic  f32x4.add  local.get $magic  i32x4.sub
            i16x8.narrow_i32x4_s
            i8x16.narrow_i16x8_s  local.get $qminv  i8x16.max_s  local.get $qmaxv  i8x16.min_s
            v128.store
            local.get $src  i32.const 64  i32.add  local.set $src
            local.get $dst  i32.const 16  i32.add  local.set $dst
            br $sixteen
          end
        end
        local.get $g  i32.const 1  i32.add  local.set $g
        br $group
      end
    end)

  ;; BF16 arithmetic, no zero point: v = bf16(x / s). The bf16 rounding of each vector, on the bits:
  ;;   (bits + 0x7fff + ((bits >> 16) & 1)) & 0xffff0000   — round to nearest, ties to even.
  (func (export "quantBF16")
    (param $src i32) (param $groups i32) (param $gs i32) (param $scalePtr i32) (param $zpPtr i32)
    (param $qmin i32) (param $qmax i32) (param $dst i32)
    (local $g i32) (local $end i32) (local $s v128) (local $zp v128) (local $qminv v128) (local $qmaxv v128)
    (local $t v128) (local $magic v128)
    v128.const i32x4 0x4b400000 0x4b400000 0x4b400000 0x4b400000  local.set $magic
    local.get $qmin  i8x16.splat  local.set $qminv
    local.get $qmax  i8x16.splat  local.set $qmaxv
    i32.const 0  local.set $g
    block $done
      loop $group
        local.get $g  local.get $groups  i32.ge_u  br_if $done
        local.get $scalePtr  local.get $g  i32.const 2  i32.shl  i32.add  f32.load  f32x4.splat  local.set $s
        local.get $src  local.get $gs  i32.const 2  i32.shl  i32.add  local.set $end
        block $groupDone
          loop $sixteen
            local.get $src  local.get $end  i32.ge_u  br_if $groupDone
            local.get $dst
            local.get $src  v128.load offset=0   local.get $s  f32x4.div
            local.tee $t  v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff  i32x4.add
            local.get $t  i32.const 16  i32x4.shr_u  v128.const i32x4 1 1 1 1  v128.and  i32x4.add
            v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000  v128.and
            local.get $magic  f32x4.add  local.get $magic  i32x4.sub
            local.get $src  v128.load offset=16  local.get $s  f32x4.div
            local.tee $t  v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff  i32x4.add
            local.get $t  i32.const 16  i32x4.shr_u  v128.const i32x4 1 1 1 1  v128.and  i32x4.add
            v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000  v128.and
            local.get $magic  f32x4.add  local.get $magic  i32x4.sub
            i16x8.narrow_i32x4_s
            local.get $src  v128.load offset=32  local.get $s  f32x4.div
            local.tee $t  v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff  i32x4.add
            local.get $t  i32.const 16  i32x4.shr_u  v128.const i32x4 1 1 1 1  v128.and  i32x4.add
            v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000  v128.and
            local.get $magic  f32x4.add  local.get $magic  i32x4.sub
            local.get $src  v128.load offset=48  local.get $s  f32x4.div
            local.tee $t  v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff  i32x4.add
            local.get $t  i32.const 16  i32x4.shr_u  v128.const i32x4 1 1 1 1  v128.and  i32x4.add
            v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000  v128.and
            local.get $magic  f32x4.add  local.get $magic  i32x4.sub
            i16x8.narrow_i32x4_s
            i8x16.narrow_i16x8_s  local.get $qminv  i8x16.max_s  local.get $qmaxv  i8x16.min_s
            v128.store
            local.get $src  i32.const 64  i32.add  local.set $src
            local.get $dst  i32.const 16  i32.add  local.set $dst
            br $sixteen
          end
        end
        local.get $g  i32.const 1  i32.add  local.set $g
        br $group
      end
    end)

  ;; BF16 arithmetic with a zero point: v = bf16(bf16(x / s) + zp).
  (func (export "quantBF16Zp")
    (param $src i32) (param $groups i32) (param $gs i32) (param $scalePtr i32) (param $zpPtr i32)
    (param $qmin i32) (param $qmax i32) (param $dst i32)
    (local $g i32) (local $end i32) (local $s v128) (local $zp v128) (local $qminv v128) (local $qmaxv v128)
    (local $t v128) (local $magic v128)
    v128.const i32x4 0x4b400000 0x4b400000 0x4b400000 0x4b400000  local.set $magic
    local.get $qmin  i8x16.splat  local.set $qminv
    local.get $qmax  i8x16.splat  local.set $qmaxv
    i32.const 0  local.set $g
    block $done
      loop $group
        local.get $g  local.get $groups  i32.ge_u  br_if $done
        local.get $scalePtr  local.get $g  i32.const 2  i32.shl  i32.add  f32.load  f32x4.splat  local.set $s
        local.get $zpPtr  local.get $g  i32.const 2  i32.shl  i32.add  f32.load  f32x4.splat  local.set $zp
        local.get $src  local.get $gs  i32.const 2  i32.shl  i32.add  local.set $end
        block $groupDone
          loop $sixteen
            local.get $src  local.get $end  i32.ge_u  br_if $groupDone
            local.get $dst
            local.get $src  v128.load offset=0   local.get $s  f32x4.div
            local.tee $t  v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff  i32x4.add
            local.get $t  i32.const 16  i32x4.shr_u  v128.const i32x4 1 1 1 1  v128.and  i32x4.add
            v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000  v128.and
            local.get $zp  f32x4.add
            local.tee $t  v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff  i32x4.add
            local.get $t  i32.const 16  i32x4.shr_u  v128.const i32x4 1 1 1 1  v128.and  i32x4.add
            v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000  v128.and
            local.get $magic  f32x4.add  local.get $magic  i32x4.sub
            local.get $src  v128.load offset=16  local.get $s  f32x4.div
            local.tee $t  v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff  i32x4.add
            local.get $t  i32.const 16  i32x4.shr_u  v128.const i32x4 1 1 1 1  v128.and  i32x4.add
            v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000  v128.and
            local.get $zp  f32x4.add
            local.tee $t  v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff  i32x4.add
            local.get $t  i32.const 16  i32x4.shr_u  v128.const i32x4 1 1 1 1  v128.and  i32x4.add
            v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000  v128.and
            local.get $magic  f32x4.add  local.get $magic  i32x4.sub
            i16x8.narrow_i32x4_s
            local.get $src  v128.load offset=32  local.get $s  f32x4.div
            local.tee $t  v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff  i32x4.add
            local.get $t  i32.const 16  i32x4.shr_u  v128.const i32x4 1 1 1 1  v128.and  i32x4.add
            v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000  v128.and
            local.get $zp  f32x4.add
            local.tee $t  v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff  i32x4.add
            local.get $t  i32.const 16  i32x4.shr_u  v128.const i32x4 1 1 1 1  v128.and  i32x4.add
            v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000  v128.and
            local.get $magic  f32x4.add  local.get $magic  i32x4.sub
            local.get $src  v128.load offset=48  local.get $s  f32x4.div
            local.tee $t  v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff  i32x4.add
            local.get $t  i32.const 16  i32x4.shr_u  v128.const i32x4 1 1 1 1  v128.and  i32x4.add
            v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000  v128.and
            local.get $zp  f32x4.add
            local.tee $t  v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff  i32x4.add
            local.get $t  i32.const 16  i32x4.shr_u  v128.const i32x4 1 1 1 1  v128.and  i32x4.add
            v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000  v128.and
            local.get $magic  f32x4.add  local.get $magic  i32x4.sub
            i16x8.narrow_i32x4_s
            i8x16.narrow_i16x8_s  local.get $qminv  i8x16.max_s  local.get $qmaxv  i8x16.min_s
            v128.store
            local.get $src  i32.const 64  i32.add  local.set $src
            local.get $dst  i32.const 16  i32.add  local.set $dst
            br $sixteen
          end
        end
        local.get $g  i32.const 1  i32.add  local.set $g
        br $group
      end
    end)

  ;; -------------------------------------------------------------------------------------------------------
  ;; compressed-tensors `pack_to_int32` of int8 q (n bytes from src, n a multiple of 32 resp. 16).
  ;; -------------------------------------------------------------------------------------------------------

  ;; 4 bits: each value + 8 (unsigned 0…15); every byte pair (lo, hi) of an i16 lane becomes lo | hi << 4,
  ;; i.e. (a | a >> 4) & 0xff of the lane; 32 values → 16 bytes through an unsigned narrow (never saturates).
  (func (export "pack4") (param $src i32) (param $n i32) (param $dst i32)
    (local $end i32) (local $a v128)
    local.get $src  local.get $n  i32.add  local.set $end
    block $done
      loop $thirtyTwo
        local.get $src  local.get $end  i32.ge_u  br_if $done
        local.get $dst
        local.get $src  v128.load offset=0   i32.const 8  i8x16.splat  i8x16.add  local.tee $a
        local.get $a  i32.const 4  i16x8.shr_u  v128.or  i32.const 0xff  i16x8.splat  v128.and
        local.get $src  v128.load offset=16  i32.const 8  i8x16.splat  i8x16.add  local.tee $a
        local.get $a  i32.const 4  i16x8.shr_u  v128.or  i32.const 0xff  i16x8.splat  v128.and
        i8x16.narrow_i16x8_u
        v128.store
        local.get $src  i32.const 32  i32.add  local.set $src
        local.get $dst  i32.const 16  i32.add  local.set $dst
        br $thirtyTwo
      end
    end)

  ;; 8 bits: the unsigned byte q + 128, which is q XOR 0x80.
  (func (export "pack8") (param $src i32) (param $n i32) (param $dst i32)
    (local $end i32) (local $a v128)
    local.get $src  local.get $n  i32.add  local.set $end
    block $done
      loop $sixteen
        local.get $src  local.get $end  i32.ge_u  br_if $done
        local.get $dst
        local.get $src  v128.load  i32.const 0x80  i8x16.splat  v128.xor
        v128.store
        local.get $src  i32.const 16  i32.add  local.set $src
        local.get $dst  i32.const 16  i32.add  local.set $dst
        br $sixteen
      end
    end)
)
