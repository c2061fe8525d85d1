; A boot sector that exercises the VGA BIOS: mode 13h with a colour pattern, then, after a
; key press, VBE mode 0x101 (640x480x8, banked window) filled with the key's ASCII code.
bits 16
org 0x7c00
start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    sti
    mov ax, 0x0013          ; mode 13h
    int 0x10
    mov ax, 0xa000
    mov es, ax
    xor di, di              ; pixel (x, y) = colour (x / 20) for 16 bars
    xor dx, dx
.row:
    xor bx, bx
.col:
    mov ax, bx
    push dx
    xor dx, dx
    mov cx, 20
    div cx
    pop dx
    stosb
    inc bx
    cmp bx, 320
    jb .col
    inc dx
    cmp dx, 200
    jb .row
    xor ah, ah              ; wait for a key
    int 0x16
    push ax
    mov ax, 0x4f02          ; VBE mode 0x101, windowed
    mov bx, 0x0101
    int 0x10
    pop ax
    xor di, di
    mov cx, 0x8000
    mov ah, al
    rep stosw               ; bank 0: the first 64 KiB, about 102 lines
.halt:
    hlt
    jmp .halt
times 510 - ($ - $$) db 0
dw 0xaa55
