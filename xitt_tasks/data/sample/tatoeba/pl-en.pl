Jan widzi duży książka Warszawa .
Anna widzi duży książka Kraków .
Jan widzi duży woda Warszawa .
Anna widzi duży dom Warszawa .
Jan widzi duży woda Kraków .
